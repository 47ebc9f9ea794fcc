//! The `touchpoint` binary.

fn main() -> std::process::ExitCode {
    touchpoint_core::cli::main()
}
