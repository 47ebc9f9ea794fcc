//! The `touchpoint` binary.

/// mimalloc instead of glibc malloc: the intake allocates per request on many threads, and glibc's
/// arenas cost the HTTP workers a seventh of their CPU (BENCHMARKS.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    touchpoint_core::cli::main()
}
