// Starts the example service. Settings from the environment:
//   MASCOT_API_BASE     the Mascot server, e.g. http://127.0.0.1:8080
//   MASCOT_SERVICE_KEY  this service's key (`mascot-server service-keys add --name generator`)
//   PORT                where to listen (default 8081), on HOST (default 127.0.0.1)
import { createApp, PRICE } from "./app.js";

const apiBase = process.env.MASCOT_API_BASE ?? "";
const serviceKey = process.env.MASCOT_SERVICE_KEY ?? "";
const port = Number(process.env.PORT ?? 8081);
const host = process.env.HOST ?? "127.0.0.1";
if (!apiBase || !serviceKey.startsWith("mck_") || !Number.isInteger(port)) {
  console.error("Set MASCOT_API_BASE (the Mascot server) and MASCOT_SERVICE_KEY (an mck_… key from `mascot-server service-keys add`); PORT is optional (8081).");
  process.exit(2);
}
const server = createApp({ apiBase, serviceKey, log: (line) => console.log(line) });
server.listen(port, host, () => {
  const address = /** @type {import("node:net").AddressInfo} */ (server.address());
  console.log(`generator listening on http://${host}:${address.port} (POST /generate {name}: ${PRICE} credits, Mascot at ${apiBase})`);
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => server.close(() => process.exit(0)));
