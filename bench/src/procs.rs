//! Processes under measurement: the release server (and the hello-world reference), started with a
//! given environment, waited for, sampled (RSS), and stopped or killed.

use std::{
    fs::File,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct Proc {
    pub child: Child,
    pub url: String,
    pub started_in: Duration,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(18099)
}

/// Starts `bin args` with `env` on `port` and waits until `ready_path` answers 200.
pub fn start(
    bin: &str,
    args: &[&str],
    env: &[(String, String)],
    port: u16,
    ready_path: &str,
    log: PathBuf,
) -> anyhow::Result<Proc> {
    let out = File::create(&log)?;
    let t0 = Instant::now();
    let child = Command::new(bin)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        // Every load comes from 127.0.0.1: per-address limits would measure themselves.
        .env("RATE_LIMIT_SIGNUPS_PER_HOUR", "100000000")
        .env("RATE_LIMIT_LOGINS_PER_MINUTE", "100000000")
        .env("RATE_LIMIT_CHECKOUTS_PER_HOUR", "100000000")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out))
        .spawn()?;
    let url = format!("http://127.0.0.1:{port}");
    let ready = format!("{url}{ready_path}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(res) = ureq_get(&ready) {
            if res == 200 {
                break;
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("{bin} did not become ready; see {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(Proc { child, url, started_in: t0.elapsed() })
}

/// A minimal blocking GET (status only), so start-up timing is not skewed by a client runtime.
fn ureq_get(url: &str) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
    let mut buf = [0u8; 32];
    let n = s.read(&mut buf)?;
    let head = String::from_utf8_lossy(&buf[..n]);
    Ok(head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0))
}

/// Resident memory of a process, from /proc (KB; 0 once it is gone).
fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

impl Proc {
    /// CPU seconds (user + system) the process has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds_of(self.child.id())
    }

    pub fn rss_kb(&self) -> u64 {
        rss_of(self.child.id())
    }

    pub fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn sigkill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Samples a process's RSS every 100 ms until told to stop; returns the peak in KB.
pub fn sample_peak_rss(pid: u32, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let rss = rss_of(pid);
            peak = peak.max(rss);
            std::thread::sleep(Duration::from_millis(100));
        }
        peak
    })
}

/// `wrk` against `url`: (requests/s, p99 ms).
pub fn wrk(url: &str, connections: u32, seconds: u32, token: Option<&str>) -> anyhow::Result<(f64, f64)> {
    wrk_with(url, connections, seconds, token, None)
}

/// `wrk` POSTing the same JSON `body` to `url`: (requests/s, p99 ms).
pub fn wrk_post(url: &str, connections: u32, seconds: u32, token: &str, body: &str) -> anyhow::Result<(f64, f64)> {
    wrk_with(url, connections, seconds, Some(token), Some(body))
}

fn wrk_with(
    url: &str,
    connections: u32,
    seconds: u32,
    token: Option<&str>,
    body: Option<&str>,
) -> anyhow::Result<(f64, f64)> {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t", "2", "-c", &connections.to_string(), "-d", &format!("{seconds}s"), "--latency"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let script = match body {
        Some(body) => {
            let path = std::env::temp_dir().join(format!("mascot-bench-{}.lua", std::process::id()));
            let quoted = body.replace('\\', "\\\\").replace('"', "\\\"");
            std::fs::write(
                &path,
                format!("wrk.method = \"POST\"\nwrk.body = \"{quoted}\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"),
            )?;
            cmd.args(["-s", &path.to_string_lossy()]);
            Some(path)
        }
        None => None,
    };
    let out = cmd.arg(url).output();
    if let Some(p) = script {
        let _ = std::fs::remove_file(p);
    }
    let out = out?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok());
    let p99 = text
        .lines()
        .find(|l| l.trim_start().starts_with("99%"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(parse_ms);
    let non2xx = text.lines().any(|l| l.contains("Non-2xx"));
    match (rps, p99) {
        (Some(r), Some(p)) if !non2xx => Ok((r, p)),
        _ => anyhow::bail!("wrk output not understood (or non-2xx answers):\n{text}"),
    }
}

fn parse_ms(v: &str) -> Option<f64> {
    if let Some(us) = v.strip_suffix("us") {
        us.parse::<f64>().ok().map(|x| x / 1000.0)
    } else if let Some(ms) = v.strip_suffix("ms") {
        ms.parse().ok()
    } else if let Some(s) = v.strip_suffix('s') {
        s.parse::<f64>().ok().map(|x| x * 1000.0)
    } else {
        None
    }
}

/// CPU seconds (user + system) used by `pid`, from /proc (clock ticks of 1/100 s on Linux).
pub fn cpu_seconds_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
