//! File types by magic bytes: the sensor asks "was this a known document
//! type before the write, and is it unknown after?". Hand-written rather than
//! a crate such as `infer`: we need a small, fixed set that includes the
//! clinical formats (DICOM's `DICM` at offset 128, HL7 v2 text) and a cheap
//! plain-text test, and nothing that reads past the sampled head.

use serde::Serialize;

/// A file's type as its first bytes tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// Zero bytes.
    Empty,
    Pdf,
    /// ZIP containers, including DOCX/XLSX/PPTX and ODF.
    Zip,
    Png,
    Jpeg,
    Gif,
    Tiff,
    Bmp,
    /// OLE2 compound files: legacy .doc/.xls/.ppt, .msg.
    Ole2,
    Rtf,
    /// DICOM part 10 (`DICM` at offset 128).
    Dicom,
    Gzip,
    /// A zlib stream (git loose objects, some caches).
    Zlib,
    SevenZip,
    Rar,
    Xz,
    Bzip2,
    Zstd,
    /// git pack files.
    GitPack,
    Elf,
    /// Windows PE executables.
    Pe,
    /// `ar` archives (static libraries, .rlib).
    Ar,
    Sqlite,
    /// KeePass databases (encrypted by design, so known).
    Keepass,
    Mp4,
    Mp3,
    Xml,
    Html,
    /// HL7 v2 messages (`MSH|`).
    Hl7,
    /// Text (UTF-8 or ASCII) with no more specific type.
    Text,
    /// None of the above: what encrypted output looks like.
    Unknown,
}

impl FileKind {
    /// Whether the type is a recognised format, so that turning into
    /// [`FileKind::Unknown`] means the content lost its structure.
    pub fn is_known(self) -> bool {
        !matches!(self, Self::Unknown | Self::Empty)
    }

    /// Whether the type is a document or image users keep (as opposed to
    /// text, code and build artefacts), for weighing deletions.
    pub fn is_document(self) -> bool {
        matches!(
            self,
            Self::Pdf
                | Self::Zip
                | Self::Png
                | Self::Jpeg
                | Self::Gif
                | Self::Tiff
                | Self::Bmp
                | Self::Ole2
                | Self::Rtf
                | Self::Dicom
                | Self::Sqlite
                | Self::Mp4
                | Self::Mp3
        )
    }
}

const SIGNATURES: &[(&[u8], FileKind)] = &[
    (b"%PDF-", FileKind::Pdf),
    (b"PK\x03\x04", FileKind::Zip),
    (b"PK\x05\x06", FileKind::Zip),
    (b"PK\x07\x08", FileKind::Zip),
    (b"\x89PNG\r\n\x1a\n", FileKind::Png),
    (b"\xff\xd8\xff", FileKind::Jpeg),
    (b"GIF87a", FileKind::Gif),
    (b"GIF89a", FileKind::Gif),
    (b"II*\x00", FileKind::Tiff),
    (b"MM\x00*", FileKind::Tiff),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", FileKind::Ole2),
    (b"{\\rtf", FileKind::Rtf),
    (b"\x1f\x8b", FileKind::Gzip),
    (b"7z\xbc\xaf\x27\x1c", FileKind::SevenZip),
    (b"Rar!\x1a\x07", FileKind::Rar),
    (b"\xfd7zXZ\x00", FileKind::Xz),
    (b"BZh", FileKind::Bzip2),
    (b"\x28\xb5\x2f\xfd", FileKind::Zstd),
    (b"PACK", FileKind::GitPack),
    (b"\x7fELF", FileKind::Elf),
    (b"!<arch>\n", FileKind::Ar),
    (b"SQLite format 3\x00", FileKind::Sqlite),
    (b"\x03\xd9\xa2\x9a", FileKind::Keepass),
    (b"ID3", FileKind::Mp3),
    (b"MSH|", FileKind::Hl7),
    (b"\xef\xbb\xbfMSH|", FileKind::Hl7),
];

/// The type of a file whose first bytes are `head` (give at least 132 bytes
/// when the file has them, so DICOM is seen; more helps the text test).
pub fn detect(head: &[u8]) -> FileKind {
    if head.is_empty() {
        return FileKind::Empty;
    }
    if head.get(128..132) == Some(b"DICM") {
        return FileKind::Dicom;
    }
    if let Some(&(_, kind)) = SIGNATURES.iter().find(|(sig, _)| head.starts_with(sig)) {
        return kind;
    }
    if head.get(4..8) == Some(b"ftyp") {
        return FileKind::Mp4;
    }
    if head.starts_with(b"MZ") && head.len() >= 64 {
        return FileKind::Pe;
    }
    if head.starts_with(b"BM") && head.len() >= 26 && head.get(6..10) == Some(&[0, 0, 0, 0]) {
        return FileKind::Bmp;
    }
    if let [cmf, flg, ..] = *head
        && cmf & 0x0f == 8
        && cmf >> 4 <= 7
        && (u16::from(cmf) * 256 + u16::from(flg)) % 31 == 0
        && flg & 0x20 == 0
    {
        return FileKind::Zlib;
    }
    if is_text(head) {
        let trimmed = trim_start(head);
        if starts_with_ignore_case(trimmed, b"<?xml") {
            return FileKind::Xml;
        }
        if starts_with_ignore_case(trimmed, b"<!doctype html") || starts_with_ignore_case(trimmed, b"<html") {
            return FileKind::Html;
        }
        return FileKind::Text;
    }
    FileKind::Unknown
}

/// Text: valid UTF-8 (a character cut by the sample's end is allowed) with
/// hardly any control characters other than whitespace.
fn is_text(head: &[u8]) -> bool {
    let sample = head.get(..8192).unwrap_or(head);
    let valid = match std::str::from_utf8(sample) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => match sample.get(..e.valid_up_to()).map(std::str::from_utf8) {
            Some(Ok(s)) => s,
            _ => return false,
        },
        Err(_) => return false,
    };
    if valid.is_empty() {
        return false;
    }
    let controls = valid.chars().filter(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0c')).count();
    controls * 100 <= valid.len()
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

fn starts_with_ignore_case(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes.get(..prefix.len()).is_some_and(|b| b.eq_ignore_ascii_case(prefix))
}

/// Extensions of files users keep. A rename from one of these to anything
/// else (or an appended extension) is what ransomware does.
const DOCUMENT_EXTENSIONS: &[&str] = &[
    "pdf", "doc", "docx", "docm", "dot", "dotx", "xls", "xlsx", "xlsm", "xlsb", "csv", "ppt", "pptx", "odt", "ods",
    "odp", "rtf", "txt", "md", "xml", "json", "html", "htm", "png", "jpg", "jpeg", "gif", "tif", "tiff", "bmp", "heic",
    "dcm", "dicom", "hl7", "msg", "eml", "pst", "ost", "zip", "7z", "rar", "gz", "tar", "db", "sqlite", "mdb", "accdb",
    "vsd", "vsdx", "mp4", "mov", "mp3", "wav", "kdbx", "one", "pub", "sql", "bak",
];

/// Whether `ext` (lower case, no dot) is a document extension.
pub fn is_document_extension(ext: &str) -> bool {
    DOCUMENT_EXTENSIONS.contains(&ext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_corpus_formats() {
        assert_eq!(detect(b"%PDF-1.7\n%\xe2\xe3"), FileKind::Pdf);
        assert_eq!(detect(b"PK\x03\x04\x14\x00"), FileKind::Zip);
        assert_eq!(detect(b"\x89PNG\r\n\x1a\n\x00\x00"), FileKind::Png);
        assert_eq!(detect(b"\xff\xd8\xff\xe0\x00\x10JFIF"), FileKind::Jpeg);
        assert_eq!(detect(b"GIF89a\x01\x00"), FileKind::Gif);
        assert_eq!(detect(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00"), FileKind::Ole2);
        assert_eq!(detect(b"{\\rtf1\\ansi"), FileKind::Rtf);
        let mut dicom = vec![0u8; 128];
        dicom.extend(b"DICM\x02\x00");
        assert_eq!(detect(&dicom), FileKind::Dicom);
        assert_eq!(detect(b"MSH|^~\\&|LAB|"), FileKind::Hl7);
        assert_eq!(detect(b"name,dob,ward\nA,1970-01-01,3\n"), FileKind::Text);
        assert_eq!(detect(b"  <?xml version=\"1.0\"?><a/>"), FileKind::Xml);
        assert_eq!(detect(b"\x7fELF\x02\x01\x01"), FileKind::Elf);
        assert_eq!(detect(b"!<arch>\n"), FileKind::Ar);
        assert_eq!(detect(b"\x78\x9c\x4b\x4c"), FileKind::Zlib);
        assert_eq!(detect(b"\x78\x01\x4b\x4c"), FileKind::Zlib);
        assert_eq!(detect(b""), FileKind::Empty);
    }

    #[test]
    fn random_bytes_are_unknown_and_text_cut_mid_character_is_text() {
        use rand::{RngCore, SeedableRng};
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let mut unknown = 0;
        for _ in 0..200 {
            let mut buf = vec![0u8; 4096];
            rng.fill_bytes(&mut buf);
            if detect(&buf) == FileKind::Unknown {
                unknown += 1;
            }
        }
        // A few random heads match a short signature (zlib's two-byte check,
        // `BZh`, `ID3`); nearly all are unknown.
        assert!(unknown >= 195, "{unknown} of 200");
        let text = "Befund: unauffällig".as_bytes();
        let cut = text.get(..text.len() - 1).unwrap();
        assert_eq!(detect(cut), FileKind::Text);
        assert_eq!(detect(b"abc\x00\x01\x02\x03def\x00\x00"), FileKind::Unknown);
    }

    #[test]
    fn known_and_document_kinds() {
        assert!(FileKind::Pdf.is_known() && FileKind::Pdf.is_document());
        assert!(FileKind::Text.is_known() && !FileKind::Text.is_document());
        assert!(!FileKind::Unknown.is_known() && !FileKind::Empty.is_known());
        assert!(is_document_extension("docx") && !is_document_extension("locked") && !is_document_extension("lock"));
    }
}
