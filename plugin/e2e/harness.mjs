// Shared by the browser tests: start `mascot-server demo` (server + Stripe simulator + host page)
// and Debian's Chromium through playwright-core. Everything stops by itself.
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

export const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");

export async function startDemo(port = 0, env = {}) {
  const bin = process.env.MASCOT_SERVER_BIN ?? path.join(root, "target/debug/mascot-server");
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "mascot-e2e-"));
  const child = spawn(bin, ["demo", "--port", String(port), "--data-dir", dataDir, "--plugin-dir", path.join(root, "plugin")], {
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn", STRIPE_SECRET_KEY: "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const ready = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo did not start:\n${output}`)), 30_000);
    const onData = (chunk) => {
      output += chunk;
      const m = output.match(/MASCOT_DEMO_READY api=(\S+) sim=(\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ api: m[1], sim: m[2] });
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", (c) => (output += c));
    child.on("exit", (code) => reject(new Error(`demo exited with ${code}:\n${output}`)));
  });
  // A demo that goes away while its tests still run says so, with how it ended and its last words
  // (else the tests only see "fetch failed" or a tab that cannot reach the server).
  let stopping = false;
  child.on("exit", (code, signal) => {
    if (!stopping) process.stderr.write(`\nmascot-server demo on ${ready.api} exited (code ${code}, signal ${signal}) before stop():\n${output.slice(-4000)}\n`);
  });
  return {
    ...ready,
    dataDir,
    /** What the demo printed so far (without SMTP_URL it prints its mails). */
    output: () => output,
    /** Runs an operator command (`mascot-server users reset-password …`) on the demo's database. */
    async operator(...args) {
      const { execFile } = await import("node:child_process");
      const databaseUrl = `sqlite://${path.join(dataDir, "mascot-demo.db")}?mode=rwc`;
      return new Promise((resolve, reject) =>
        execFile(bin, args, { env: { ...process.env, DATABASE_URL: databaseUrl, RUST_LOG: "warn", STRIPE_SECRET_KEY: "" } }, (err, stdout, stderr) =>
          err ? reject(new Error(`${args.join(" ")}: ${err.message}\n${stderr}`)) : resolve(stdout),
        ),
      );
    },
    async stop() {
      stopping = true;
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r() : child.on("exit", r)));
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser() {
  // playwright gives each launch a fresh, temporary profile (the empty --user-data-dir we want).
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    // IsolateSandboxedIframes off: the plugin's sandboxed frame then shares the page's process, so
    // request routing set up by a test reaches it every time (in a process of its own it did not
    // always); the frame's origin stays "null".
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-features=IsolateSandboxedIframes"],
  });
  return {
    browser,
    async close() {
      await browser.close();
    },
  };
}

/** The plugin UI's frame in the host page (a new one after each reopen or theme change). */
export async function pluginFrame(page) {
  const handle = await page.locator("#plugin-slot iframe").elementHandle();
  return handle.contentFrame();
}

const axeSource = fs.readFileSync(path.join(root, "plugin/node_modules/axe-core/axe.min.js"), "utf8");

/** Runs axe-core inside the plugin frame, or in `frame` (a page of the operator console), with every
 * rule axe enables by default (WCAG A/AA and best practices); returns its violations, one readable
 * line each. */
export async function axeViolations(page, frame) {
  frame ??= await pluginFrame(page);
  await frame.evaluate((src) => {
    if (!window.axe) (0, eval)(src);
  }, axeSource);
  const result = await frame.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ["violations"] });
    return { violations: r.violations, ran: [...r.passes, ...r.violations, ...r.incomplete, ...r.inapplicable].map((x) => x.id) };
  });
  // Make sure the best-practice rules really ran (a silent change of axe's defaults would hide them).
  for (const id of ["region", "landmark-one-main", "page-has-heading-one", "aria-allowed-role", "color-contrast"]) {
    if (!result.ran.includes(id)) throw new Error(`axe did not run ${id}`);
  }
  return result.violations.map((v) => `${v.id} (${v.impact}): ${v.help}: ${v.nodes.map((n) => `${n.target.join(" ")} ${n.failureSummary ?? ""}`).join(" | ")}`);
}

/** Shows one screen in Figma's light and dark themes (the host reopens the plugin for each, and
 * `reach` brings it back to the screen): axe-core finds no violation, and a screenshot of each is
 * kept in artifacts/screenshots/<name>-<theme>.png. Ends in the dark theme, as the tests start. */
export async function everyTheme(page, name, reach) {
  const shots = path.join(root, "artifacts/screenshots");
  fs.mkdirSync(shots, { recursive: true });
  for (const theme of ["light", "dark"]) {
    await page.evaluate((t) => window.__figmaHost.setTheme(t), theme);
    await reach();
    const violations = await axeViolations(page);
    if (violations.length) throw new Error(`${name}, ${theme}: ${violations.join("\n")}`);
    await page.locator(".panel").screenshot({ path: path.join(shots, `${name}-${theme}.png`) });
  }
}

/** The ids Tab reaches from the tab bar, each marked when its focus ring is not visible. */
export async function tabOrder(page, count) {
  const frame = await pluginFrame(page);
  await page.frameLocator("#plugin-slot iframe").locator("#tab-account").focus();
  const order = [];
  for (let i = 0; i < count; i++) {
    await page.keyboard.press("Tab");
    order.push(
      await frame.evaluate(() => {
        const el = document.activeElement;
        const style = getComputedStyle(el);
        return `${el.id}${style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2 ? "" : " (focus not visible)"}`;
      }),
    );
  }
  return order;
}

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port) {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, "127.0.0.1", () => (c.end(), resolve(true)));
      c.on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`SMTP server did not listen on ${port}`);
}

/** A real SMTP server (aiosmtpd on 127.0.0.1, from SMTP_PYTHON) that keeps every mail in a
 * Maildir: `env` is what the demo needs to send to it, `waitForMail(n)` the n-th mail's text. */
export async function startSmtp() {
  const python = process.env.SMTP_PYTHON;
  if (!python) throw new Error("SMTP_PYTHON: a Python with aiosmtpd (scripts/test-plugin sets it)");
  // aiosmtpd's Mailbox handler creates the Maildir (new/, cur/, tmp/) when the folder does not exist.
  const maildir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "mascot-mail-")), "maildir");
  const port = await freePort();
  const child = spawn(python, ["-m", "aiosmtpd", "-n", "-l", `127.0.0.1:${port}`, "-c", "aiosmtpd.handlers.Mailbox", maildir], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  await waitForPort(port);
  const mails = () => {
    const dir = path.join(maildir, "new");
    if (!fs.existsSync(dir)) return [];
    return fs
      .readdirSync(dir)
      .map((f) => path.join(dir, f))
      .sort((a, b) => fs.statSync(a).mtimeMs - fs.statSync(b).mtimeMs)
      .map((f) => fs.readFileSync(f, "utf8"));
  };
  return {
    env: { SMTP_URL: `smtp://127.0.0.1:${port}`, MAIL_FROM: "Mascot <no-reply@mascot.test>" },
    mails,
    async waitForMail(n) {
      for (let i = 0; i < 100; i++) {
        const all = mails();
        if (all.length >= n) return all[n - 1];
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`no mail number ${n}`);
    },
    /** The first link to `pathname` in a mail (quoted-printable soft breaks undone). */
    link(mail, pathname) {
      const text = mail.replace(/=\r?\n/g, "").replace(/=3D/g, "=");
      return text.match(new RegExp(`http://127\\.0\\.0\\.1:\\d+${pathname.replace(/[/?]/g, "\\$&")}\\?token=[A-Za-z0-9_-]+`))?.[0] ?? null;
    },
    stop() {
      child.kill("SIGTERM");
      fs.rmSync(path.dirname(maildir), { recursive: true, force: true });
    },
  };
}
