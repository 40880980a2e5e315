//! The `stampede` binary: parse the command line and hand over to [`stampede::cli`].

fn main() -> std::process::ExitCode {
    stampede::cli::main()
}
