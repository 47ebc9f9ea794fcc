//! The `touchpoint` CLI built inside the tests package, so integration tests can spawn and kill -9 it.

fn main() -> std::process::ExitCode {
    touchpoint_core::cli::main()
}
