//! Just enough ELF reading to tell whether a binary can run on an empty image: a dynamically
//! linked program names its loader in a PT_INTERP program header; a static one has none.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linkage {
    NotElf,
    Static,
    Dynamic,
}

const PT_INTERP: u32 = 3;

pub fn linkage(path: &Path) -> io::Result<Linkage> {
    let mut f = std::fs::File::open(path)?;
    let mut ident = [0u8; 64];
    if f.read(&mut ident)? < 64 || &ident[..4] != b"\x7fELF" {
        return Ok(Linkage::NotElf);
    }
    // Only 64-bit little-endian objects are expected on the hosts we run on.
    if ident[4] != 2 || ident[5] != 1 {
        return Ok(Linkage::NotElf);
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let phoff = u64::from_le_bytes(ident[32..40].try_into().expect("8 bytes"));
    let phentsize = u16_at(&ident, 54) as u64;
    let phnum = u16_at(&ident, 56) as u64;
    if phentsize < 4 {
        return Ok(Linkage::NotElf);
    }
    for i in 0..phnum {
        f.seek(SeekFrom::Start(phoff + i * phentsize))?;
        let mut p_type = [0u8; 4];
        f.read_exact(&mut p_type)?;
        if u32::from_le_bytes(p_type) == PT_INTERP {
            return Ok(Linkage::Dynamic);
        }
    }
    Ok(Linkage::Static)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_binary_is_dynamic_and_text_is_not_elf() {
        // Test binaries are built without crt-static, so they name a loader.
        let me = std::env::current_exe().unwrap();
        assert_eq!(linkage(&me).unwrap(), Linkage::Dynamic);
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("x");
        std::fs::write(&text, "#!/bin/sh\necho hi\n").unwrap();
        assert_eq!(linkage(&text).unwrap(), Linkage::NotElf);
    }
}
