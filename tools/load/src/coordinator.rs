//! The coordinator: splits the sockets over worker processes (itself,
//! re-executed) and 127.0.0.x source addresses, starts every worker at the same
//! instant, samples the server's CPU and memory at the edges of the measured
//! window, merges the workers' reports and prints one JSON object.

use std::{
    io::{BufRead, BufReader, Write},
    net::{IpAddr, Ipv4Addr},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use super::{
    procfs,
    proto::Proto,
    stats::{merge_counts, tally, Latency, WorkerReport},
    worker::{now_ns, Schedule, SocketSpec, WorkerPlan},
};

/// A run, as given on the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Base URL of each node, e.g. http://127.0.0.1:8000 (repeat or comma-separate
    /// for several nodes: viewers are split over them, each room has senders on each).
    #[arg(long, value_delimiter = ',', required = true)]
    pub url: Vec<String>,
    /// Wire protocol: stampede (also the floor and Django Channels) or centrifuge.
    #[arg(long, value_enum, default_value = "stampede")]
    pub proto: ProtoArg,
    /// Stream ids, one room each.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub streams: Vec<i64>,
    /// Viewer sockets in all, spread evenly over the rooms.
    #[arg(long, default_value_t = 100)]
    pub viewers: usize,
    /// Sender sockets per room (logged in).
    #[arg(long, default_value_t = 2)]
    pub senders_per_room: usize,
    /// Chat messages per second, in all.
    #[arg(long, default_value_t = 1.0)]
    pub chat_rate: f64,
    /// Reactions per second, in all.
    #[arg(long, default_value_t = 0.0)]
    pub reaction_rate: f64,
    /// Seconds of warm-up (sending, not measured).
    #[arg(long, default_value_t = 5.0)]
    pub warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Seconds to wait after the window for deliveries still on their way.
    #[arg(long, default_value_t = 3.0)]
    pub drain: f64,
    /// Seconds to go on listening after the drain: deliveries then are late
    /// (still counted as lost, and counted apart, message by message).
    #[arg(long, default_value_t = 5.0)]
    pub late: f64,
    /// Senders log in as PREFIX0, PREFIX1, ... (`POST /api/login`).
    #[arg(long, default_value = "bench")]
    pub user_prefix: String,
    /// Password of every sender.
    #[arg(long, default_value = "pw")]
    pub password: String,
    /// Senders do not log in (anonymous senders).
    #[arg(long)]
    pub no_login: bool,
    /// Send no Origin header.
    #[arg(long)]
    pub no_origin: bool,
    /// Server process ids (their threads and descendants are included).
    #[arg(long, value_delimiter = ',')]
    pub pid: Vec<u32>,
    /// Most sockets per worker process (the descriptor limit is per process).
    #[arg(long, default_value_t = 5000)]
    pub per_worker: usize,
    /// Connection attempts in flight per worker.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// Seconds one connection attempt may take.
    #[arg(long, default_value_t = 20)]
    pub connect_timeout: u64,
    /// A label copied into the output (system, workload, repetition).
    #[arg(long, default_value = "")]
    pub label: String,
}

/// `--proto`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ProtoArg {
    /// Stampede's seed protocol.
    Stampede,
    /// Centrifuge protocol v1 JSON.
    Centrifuge,
}

impl From<ProtoArg> for Proto {
    fn from(p: ProtoArg) -> Self {
        match p {
            ProtoArg::Stampede => Proto::Stampede,
            ProtoArg::Centrifuge => Proto::Centrifuge,
        }
    }
}

/// The sockets of a run, split over workers.
pub fn plan(args: &RunArgs) -> Vec<WorkerPlan> {
    let rooms = args.streams.len().max(1);
    let urls = args.url.len().max(1);
    let senders: Vec<SocketSpec> = (0..rooms * args.senders_per_room)
        .map(|j| SocketSpec {
            url: (j % args.senders_per_room.max(1)) % urls,
            room: args.streams[j / args.senders_per_room.max(1)],
            user: (!args.no_login).then(|| format!("{}{j}", args.user_prefix)),
        })
        .collect();
    let viewers: Vec<SocketSpec> = (0..args.viewers)
        .map(|i| SocketSpec {
            url: (i / rooms) % urls,
            room: args.streams[i % rooms],
            user: None,
        })
        .collect();
    let total = viewers.len() + senders.len();
    let workers = total.div_ceil(args.per_worker.max(1)).max(1);
    let chunk = viewers.len().div_ceil(workers).max(1);
    let mut chunks = viewers.chunks(chunk);
    (0..workers)
        .map(|index| WorkerPlan {
            index,
            proto: args.proto.into(),
            urls: args.url.clone(),
            origin: !args.no_origin,
            // 127.0.0.10, .11, ...: each worker its own ephemeral port range.
            local_ip: Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + index as u8))),
            viewers: chunks.next().map(<[_]>::to_vec).unwrap_or_default(),
            senders: if index == 0 {
                senders.clone()
            } else {
                Vec::new()
            },
            password: args.password.clone(),
            chat_rate: if index == 0 { args.chat_rate } else { 0.0 },
            reaction_rate: if index == 0 { args.reaction_rate } else { 0.0 },
            connect_concurrency: args.connect_concurrency,
            connect_timeout_secs: args.connect_timeout,
        })
        .collect()
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
}

fn sleep_until_ns(t: u64) {
    let now = now_ns();
    if t > now {
        std::thread::sleep(Duration::from_nanos(t - now));
    }
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Runs the whole thing and returns the run's JSON object.
pub fn run(args: &RunArgs) -> anyhow::Result<Value> {
    if args.streams.is_empty() {
        bail!("--streams needs at least one stream id");
    }
    let plans = plan(args);
    let exe = std::env::current_exe().context("finding my own executable")?;
    let before = procfs::sample(&args.pid);

    // Start the workers; one thread per worker forwards its stdout lines.
    let (tx, rx) = mpsc::channel::<(usize, String)>();
    let mut workers = Vec::new();
    for p in &plans {
        let mut child = Command::new(&exe)
            .arg("--worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a worker")?;
        let mut stdin = child.stdin.take().expect("piped");
        serde_json::to_writer(&mut stdin, p)?;
        stdin.write_all(b"\n")?;
        stdin.flush()?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, index) = (tx.clone(), p.index);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send((index, line)).is_err() {
                    break;
                }
            }
        });
        workers.push(Worker { child, stdin });
    }
    drop(tx);
    let connect_started = now_ns();

    let wait_line = |what: &str, timeout: Duration| -> anyhow::Result<Vec<String>> {
        let mut lines = vec![String::new(); plans.len()];
        let deadline = std::time::Instant::now() + timeout;
        let mut got = 0;
        while got < plans.len() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let (i, line) = rx
                .recv_timeout(left)
                .map_err(|_| anyhow!("a worker did not send its {what} in time"))?;
            lines[i] = line;
            got += 1;
        }
        Ok(lines)
    };

    let connect_budget = Duration::from_secs(
        60 + args.connect_timeout
            * (args.viewers as u64 / args.connect_concurrency.max(1) as u64 + 1),
    );
    let ready = wait_line("ready line", connect_budget)?;
    let connect_seconds = (now_ns() - connect_started) as f64 / 1e9;
    let connected = procfs::sample(&args.pid);
    let mut ready_opened = 0u64;
    for l in &ready {
        let v: Value = serde_json::from_str(l).context("reading a worker's ready line")?;
        ready_opened += v["ready"]["opened"].as_u64().unwrap_or(0);
    }

    let t0 = now_ns() + 300_000_000;
    let w0 = t0 + (args.warmup * 1e9) as u64;
    let w1 = w0 + (args.duration * 1e9) as u64;
    let stop = w1 + (args.drain * 1e9) as u64;
    let report = stop + (args.late * 1e9) as u64;
    let schedule = Schedule {
        t0,
        w0,
        w1,
        stop,
        report,
    };
    for w in &mut workers {
        serde_json::to_writer(&mut w.stdin, &schedule)?;
        w.stdin.write_all(b"\n")?;
        w.stdin.flush()?;
    }
    let worker_pids: Vec<u32> = workers.iter().map(|w| w.child.id()).collect();
    sleep_until_ns(w0);
    let (s0, l0) = (procfs::sample(&args.pid), procfs::sample(&worker_pids));
    sleep_until_ns(w1);
    let (s1, l1) = (procfs::sample(&args.pid), procfs::sample(&worker_pids));

    let reports = wait_line(
        "report",
        Duration::from_secs_f64(args.drain + args.late + 60.0 + args.viewers as f64 / 1000.0),
    )?;
    for mut w in workers {
        let _ = w.child.wait();
    }

    // Merge.
    let mut latency = Latency::default();
    let mut total = WorkerReport::default();
    let mut rmin = u64::MAX;
    for l in &reports {
        let r: WorkerReport = serde_json::from_str(l).context("reading a worker's report")?;
        latency.add_pairs(&r.latency_pairs);
        total.opened += r.opened;
        total.failed += r.failed;
        for (k, v) in r.failures {
            *total.failures.entry(k).or_default() += v;
        }
        let has_viewers = r.viewers_per_room.values().sum::<u64>() > 0;
        for (k, v) in r.viewers_per_room {
            *total.viewers_per_room.entry(k).or_default() += v;
        }
        for (k, v) in r.errors {
            *total.errors.entry(k).or_default() += v;
        }
        total.sent_in_window.extend(r.sent_in_window);
        merge_counts(&mut total.delivered_per_message, r.delivered_per_message);
        merge_counts(&mut total.late_per_message, r.late_per_message);
        total.late_max_us = total.late_max_us.max(r.late_max_us);
        total.closed_during_run += r.closed_during_run;
        total.chat_sent += r.chat_sent;
        total.chat_received_in_window += r.chat_received_in_window;
        total.chat_received_outside += r.chat_received_outside;
        total.reactions_sent += r.reactions_sent;
        total.reactions_received += r.reactions_received;
        total.reaction_frames_in_window += r.reaction_frames_in_window;
        total.reactions_received_max = total.reactions_received_max.max(r.reactions_received_max);
        if has_viewers {
            rmin = rmin.min(r.reactions_received_min);
        }
    }
    let viewers: u64 = total.viewers_per_room.values().sum();
    let expected: u64 = total
        .sent_in_window
        .iter()
        .map(|(room, _)| total.viewers_per_room.get(room).copied().unwrap_or(0))
        .sum();
    let received = total.chat_received_in_window;
    let messages = tally(
        &total.sent_in_window,
        &total.viewers_per_room,
        &total.delivered_per_message,
        &total.late_per_message,
        w0,
    );
    let sent_in_window = total.sent_in_window.len() as u64;
    let cpu = s1.cpu_seconds - s0.cpu_seconds;
    let sockets = ready_opened.max(1);
    let per_viewer_s = if viewers > 0 {
        total.reaction_frames_in_window as f64 / viewers as f64 / args.duration
    } else {
        0.0
    };
    let rss_delta = connected.rss_kib.saturating_sub(before.rss_kib);

    Ok(json!({
        "label": args.label,
        "config": {
            "urls": args.url,
            "proto": format!("{:?}", args.proto).to_lowercase(),
            "streams": args.streams,
            "viewers": args.viewers,
            "senders": args.streams.len() * args.senders_per_room,
            "chat_rate": args.chat_rate,
            "reaction_rate": args.reaction_rate,
            "warmup_s": args.warmup,
            "duration_s": args.duration,
            "drain_s": args.drain,
            "late_s": args.late,
            "workers": plans.len(),
        },
        "connections": {
            "opened": total.opened,
            "failed": total.failed,
            "failures": total.failures,
            "closed_during_run": total.closed_during_run,
            "connect_seconds": r3(connect_seconds),
        },
        "chat": {
            "sent": total.chat_sent,
            "sent_in_window": sent_in_window,
            "expected": expected,
            "received": received,
            "loss": expected.saturating_sub(received),
            "loss_pct": if expected > 0 { r3(100.0 * expected.saturating_sub(received) as f64 / expected as f64) } else { 0.0 },
            "received_outside_window": total.chat_received_outside,
            "messages": messages,
            "late_max_ms": r3(total.late_max_us as f64 / 1000.0),
            "deliveries_per_s": r3(received as f64 / args.duration),
            "latency": latency.percentiles(),
        },
        "reactions": {
            "sent": total.reactions_sent,
            "received_total": total.reactions_received,
            "received_per_viewer_avg": if viewers > 0 { r3(total.reactions_received as f64 / viewers as f64) } else { 0.0 },
            "received_per_viewer_min": if rmin == u64::MAX { 0 } else { rmin },
            "received_per_viewer_max": total.reactions_received_max,
            "frames_in_window": total.reaction_frames_in_window,
            "frames_per_viewer_per_s": r3(per_viewer_s),
        },
        "errors": total.errors,
        "server": {
            "pids": args.pid,
            "cpu_seconds": r3(cpu),
            "cpu_util": r3(cpu / args.duration),
            "rss_kib_before": before.rss_kib,
            "rss_kib_connected": connected.rss_kib,
            "rss_kib_warm": s0.rss_kib,
            "rss_kib_end": s1.rss_kib,
            "hwm_kib": s1.hwm_kib,
            "rss_per_socket_kib": r3(connected.rss_kib as f64 / sockets as f64),
            "rss_delta_per_socket_kib": r3(rss_delta as f64 / sockets as f64),
            "deliveries_per_cpu_s": if cpu > 0.0 { r3(received as f64 / cpu) } else { 0.0 },
        },
        "load_tool": {
            "cpu_seconds": r3(l1.cpu_seconds - l0.cpu_seconds),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        run: RunArgs,
    }

    fn args(extra: &[&str]) -> RunArgs {
        let mut v = vec!["t", "--url", "http://127.0.0.1:1,http://127.0.0.1:2"];
        v.extend_from_slice(extra);
        T::parse_from(v).run
    }

    #[test]
    fn sockets_are_split_over_workers_rooms_and_nodes() {
        let a = args(&[
            "--streams",
            "5,6",
            "--viewers",
            "9001",
            "--per-worker",
            "5000",
        ]);
        let plans = plan(&a);
        assert_eq!(plans.len(), 2);
        let viewers: Vec<&SocketSpec> = plans.iter().flat_map(|p| &p.viewers).collect();
        assert_eq!(viewers.len(), 9001);
        for room in [5, 6] {
            for url in [0, 1] {
                let n = viewers
                    .iter()
                    .filter(|v| v.room == room && v.url == url)
                    .count();
                assert!((2249..=2251).contains(&n), "room {room} url {url}: {n}");
            }
        }
        // Every sender in worker 0, each room with one on each node.
        assert!(plans[1].senders.is_empty());
        let s = &plans[0].senders;
        assert_eq!(s.len(), 4);
        assert_eq!(
            s.iter()
                .map(|s| (s.room, s.url, s.user.clone().unwrap()))
                .collect::<Vec<_>>(),
            vec![
                (5, 0, "bench0".into()),
                (5, 1, "bench1".into()),
                (6, 0, "bench2".into()),
                (6, 1, "bench3".into())
            ]
        );
        assert_ne!(plans[0].local_ip, plans[1].local_ip);
    }
}
