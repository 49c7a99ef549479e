fn main() -> anyhow::Result<()> {
    fchm::edge::main()
}
