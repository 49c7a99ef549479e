// Plain `System` until `pipeline.lean_memory` turns huge-page blocks on (edge/memory.rs).
#[global_allocator]
static ALLOC: fchm::edge::memory::LeanAlloc = fchm::edge::memory::LeanAlloc;

fn main() -> anyhow::Result<()> {
    fchm::edge::main()
}
