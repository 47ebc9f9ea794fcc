//! The `touchpoint` CLI built inside the tests package, so integration tests can spawn and kill -9 it.

/// The same allocator as the `touchpoint` binary (core/src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    touchpoint_core::cli::main()
}
