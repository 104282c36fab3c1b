// A TCP proxy in front of the server, one request per connection, that loses answers on purpose:
// `fault(path, times, fault)` applies to the next requests whose request line contains `path`.
//   { drop: true }                 forward the request, close without the answer (the server did the work)
//   { unavailable: seconds }       answer 503 with Retry-After, without forwarding
//   { rewrite: [from, to] }        forward, and replace `from` by `to` (same length) in the answer
import net from "node:net";

export async function startProxy(upstream) {
  const target = new URL(upstream);
  const rules = [];
  const seen = [];
  const server = net.createServer((client) => {
    let buffer = Buffer.alloc(0);
    const onData = (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      const headEnd = buffer.indexOf("\r\n\r\n");
      if (headEnd < 0) return;
      const head = buffer.subarray(0, headEnd).toString("latin1");
      const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
      if (buffer.length < headEnd + 4 + length) return;
      client.off("data", onData);
      const line = head.split("\r\n")[0];
      seen.push(line);
      const rule = rules.find((r) => r.times > 0 && line.includes(r.path));
      if (rule) rule.times--;
      const fault = rule?.fault ?? {};
      if (fault.unavailable !== undefined) {
        const body = '{"error":{"code":"service_unavailable","message":"Try again shortly."}}';
        client.end(`HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: ${fault.unavailable}\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
        return;
      }
      const kept = head.split("\r\n").filter((l) => !/^connection:/i.test(l));
      const request = Buffer.concat([Buffer.from(`${kept.join("\r\n")}\r\nconnection: close\r\n\r\n`, "latin1"), buffer.subarray(headEnd + 4, headEnd + 4 + length)]);
      const up = net.connect(Number(target.port), target.hostname, () => up.write(request));
      const answer = [];
      up.on("data", (c) => answer.push(c));
      up.on("end", () => {
        if (fault.drop) {
          client.destroy();
          return;
        }
        let out = Buffer.concat(answer);
        if (fault.rewrite) {
          const [from, to] = fault.rewrite;
          if (from.length !== to.length) throw new Error("rewrite keeps the length");
          out = Buffer.from(out.toString("latin1").replace(from, to), "latin1");
        }
        client.end(out);
      });
      up.on("error", () => client.destroy());
    };
    client.on("data", onData);
    client.on("error", () => {});
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    base: `http://127.0.0.1:${server.address().port}`,
    fault(path, times, fault) {
      rules.push({ path, times, fault });
    },
    count(path) {
      return seen.filter((l) => l.includes(path)).length;
    },
    async stop() {
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
