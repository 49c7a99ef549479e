fn main() -> anyhow::Result<()> {
    fchm::server::main()
}
