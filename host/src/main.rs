//! The `komlogd` binary.

fn main() -> std::process::ExitCode {
    komlogd::cli::main()
}
