//! The binary's code layout (`crates/sinew/build.rs`): the functions listed in
//! `link/text-order.txt` are linked into their own output section, `.text.ordered`, ahead
//! of the rest of the code. A linker change or a list that no longer matches would lose
//! that silently (the binary works, its RSS grows), so the section is checked here.

/// One ELF section: its name, address and size.
struct Section {
    name: String,
    addr: u64,
    size: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The section headers of a little-endian ELF64 file.
fn sections(elf: &[u8]) -> Vec<Section> {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not ELF64");
    let shoff = u64_at(elf, 0x28) as usize;
    let shentsize = usize::from(u16_at(elf, 0x3a));
    let shnum = usize::from(u16_at(elf, 0x3c));
    let shstrndx = usize::from(u16_at(elf, 0x3e));
    let header = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(elf, header(shstrndx) + 0x18) as usize;
    (0..shnum)
        .map(|i| {
            let h = header(i);
            let name_at = strtab + u32_at(elf, h) as usize;
            let len = elf[name_at..]
                .iter()
                .position(|&b| b == 0)
                .expect("a terminated section name");
            Section {
                name: String::from_utf8_lossy(&elf[name_at..name_at + len]).into_owned(),
                addr: u64_at(elf, h + 0x10),
                size: u64_at(elf, h + 0x20),
            }
        })
        .collect()
}

#[test]
fn the_code_that_runs_is_linked_first_and_together() {
    if env!("SINEW_TEXT_ORDERED") != "1" {
        eprintln!(
            "skipped: the build does not order the code (another linker, or SINEW_TEXT_ORDER=0)"
        );
        return;
    }
    let elf = std::fs::read(env!("CARGO_BIN_EXE_sinew")).expect("the sinew binary is readable");
    let sections = sections(&elf);
    let find = |name: &str| sections.iter().find(|s| s.name == name);
    let ordered =
        find(".text.ordered").expect("a .text.ordered section: see crates/sinew/build.rs");
    let text = find(".text").expect("a .text section");
    assert!(
        ordered.addr < text.addr,
        "the ordered code comes before the rest ({:#x} >= {:#x})",
        ordered.addr,
        text.addr
    );
    // Most of the list matches even a dev build; a few hundred KiB would mean that the
    // names no longer match this code (remake the list with bench/orderfile.sh).
    assert!(
        ordered.size > 1 << 20,
        "only {} bytes of code matched link/text-order.txt",
        ordered.size
    );
}
