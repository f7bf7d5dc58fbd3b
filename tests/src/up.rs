//! `funnelfold up`, the real binary, as a child process of an end-to-end test: started
//! on a data directory with an API on a free loopback port, and killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Up {
    pub child: Child,
    /// Where its API listens (`127.0.0.1:PORT`).
    pub api: String,
}

impl Up {
    /// Starts `funnelfold up --data DATA` with two partitions, 200 ms flushes and
    /// `args`, and waits until it prints where its API listens.
    pub fn start(data: &Path, args: &[&str]) -> Up {
        Up::start_with_env(data, args, &[])
    }

    /// Like [`Up::start`], with these environment variables (say, a test broker's
    /// topic names, [`crate::broker::TestBroker::env`]).
    pub fn start_with_env(data: &Path, args: &[&str], env: &[(&str, String)]) -> Up {
        let mut child = Command::new(crate::binary::funnelfold())
            .arg("up")
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0", "--partitions", "2"])
            .args(["--flush-interval-ms", "200"])
            .args(args)
            // Nothing of the caller's environment (FUNNELFOLD_* variables) applies.
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start funnelfold up");
        let stdout = child.stdout.take().expect("stdout");
        // Killed on drop from here on, however the start goes.
        let mut up = Up {
            child,
            api: String::new(),
        };
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("up: {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = lines.recv_timeout(left) else {
                break;
            };
            if let Some(rest) = line.strip_prefix("api: http://") {
                up.api = rest
                    .split_whitespace()
                    .next()
                    .expect("an address")
                    .to_owned();
                // The rest of its output is echoed by the reader thread.
                std::thread::spawn(move || while lines.recv().is_ok() {});
                return up;
            }
        }
        panic!("funnelfold up never printed its API address");
    }

    /// Every event id of `funnel` the API lists, through its cursor paging: bots' too
    /// (the simulator sends some), as every folded event is stored.
    pub fn event_ids(&self, funnel: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/funnels/{funnel}/events?limit=1000&bots=include");
            if let Some(c) = &cursor {
                // Cursors are URL-safe base64 (see the query crate's cursor module).
                path.push_str(&format!("&cursor={c}"));
            }
            let (status, body) = crate::common::http(&self.api, "GET", &path, "");
            assert_eq!(status, 200, "{body}");
            let page: serde_json::Value = serde_json::from_str(&body).expect("json");
            for e in page["events"].as_array().expect("events") {
                ids.push(e["eventId"].as_str().expect("eventId").to_owned());
            }
            match page["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return ids,
            }
        }
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Stops it as Ctrl-C does, and checks that it exits cleanly.
    pub fn stop(mut self) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        #[allow(unsafe_code)]
        // SAFETY: sends SIGINT to our own child process; no memory is involved.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
        let status = self.child.wait().expect("reaped");
        assert!(status.success(), "a clean stop exits 0: {status}");
    }

    /// SIGKILL.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
