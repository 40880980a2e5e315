//! `stampede-load`: opens viewer and sender sockets against a chat server
//! (Stampede, or a peer speaking its seed protocol or centrifuge v1 JSON), sends
//! chat and reactions at exact total rates, and prints one JSON object with
//! end-to-end latency, loss, deliveries and the server's CPU and memory.
//!
//! ```text
//! stampede-load --url http://127.0.0.1:8000 --streams 1 --viewers 1000 \
//!     --chat-rate 20 --pid "$(pgrep -n stampede)"
//! ```

use clap::Parser;

use stampede_load as load;

#[derive(Parser)]
#[command(
    name = "stampede-load",
    about = "Load generator for Stampede and its peers"
)]
struct Cli {
    /// Internal: run as a worker process (plan on stdin).
    #[arg(long, hide = true)]
    worker: bool,
    #[command(flatten)]
    run: Option<load::coordinator::RunArgs>,
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--worker") {
        if let Err(e) = load::worker::run() {
            eprintln!("stampede-load worker: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let cli = Cli::parse();
    let Some(run) = cli.run.filter(|_| !cli.worker) else {
        eprintln!("stampede-load: --url is required");
        std::process::exit(2);
    };
    match load::coordinator::run(&run) {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("stampede-load: {e:#}");
            std::process::exit(1);
        }
    }
}
