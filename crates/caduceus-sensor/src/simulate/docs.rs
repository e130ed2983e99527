//! Realistic document bytes for the simulator's corpus and the sensor's
//! canaries: valid magic bytes and plausible structure (PDF objects, real
//! OOXML zip containers, PNG chunks, JPEG markers, an OLE2 header, DICOM part
//! 10), filled with generated clinical-sounding text that names nobody.

use std::io::{Cursor, Write};

use rand::Rng;
use zip::CompressionMethod;
use zip::write::SimpleFileOptions;

use crate::{Result, SensorError};

const WORDS: &[&str] = &[
    "patient",
    "ward",
    "admission",
    "discharge",
    "medication",
    "dose",
    "mg",
    "daily",
    "blood",
    "pressure",
    "heart",
    "rate",
    "follow-up",
    "clinic",
    "referral",
    "radiology",
    "imaging",
    "report",
    "normal",
    "findings",
    "chest",
    "x-ray",
    "ultrasound",
    "laboratory",
    "result",
    "glucose",
    "sodium",
    "potassium",
    "creatinine",
    "history",
    "allergy",
    "none",
    "known",
    "plan",
    "review",
    "weeks",
    "nurse",
    "physician",
    "consultant",
    "therapy",
    "infusion",
    "monitor",
    "stable",
    "improved",
    "symptoms",
    "mild",
    "moderate",
    "assessment",
    "the",
    "and",
    "with",
    "of",
    "in",
    "for",
    "to",
    "was",
    "is",
    "on",
    "no",
    "signs",
    "of",
    "infection",
    "budget",
    "invoice",
    "total",
    "quarter",
    "department",
    "schedule",
    "roster",
    "shift",
    "theatre",
    "procedure",
];

/// A sentence of generated words.
pub(crate) fn sentence(rng: &mut impl Rng) -> String {
    let n = rng.random_range(6..16);
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS.get(rng.random_range(0..WORDS.len())).copied().unwrap_or("report"));
    }
    s.push('.');
    s
}

/// Generated text of about `size` bytes.
pub(crate) fn text(rng: &mut impl Rng, size: usize) -> String {
    let mut s = String::with_capacity(size + 128);
    while s.len() < size {
        s.push_str(&sentence(rng));
        s.push(if rng.random_bool(0.2) { '\n' } else { ' ' });
    }
    s
}

/// The document types of the corpus, by extension.
pub(crate) const KINDS: &[&str] = &["pdf", "docx", "xlsx", "csv", "txt", "png", "jpg", "rtf", "doc", "dcm"];

/// Bytes of a document of type `ext` and about `size` bytes. `compress`
/// deflates OOXML parts (real Office files); canaries store them so their
/// content stays low-entropy.
pub(crate) fn document(rng: &mut impl Rng, ext: &str, size: usize, compress: bool) -> Result<Vec<u8>> {
    Ok(match ext {
        "pdf" => pdf(rng, size),
        "docx" => docx(rng, size, compress)?,
        "xlsx" => xlsx(rng, size, compress)?,
        "csv" => csv(rng, size),
        "rtf" => format!("{{\\rtf1\\ansi\\deff0 {{\\fonttbl {{\\f0 Arial;}}}}\\f0\\fs22 {}\\par}}", text(rng, size))
            .into_bytes(),
        "png" => png(rng, size),
        "jpg" => jpeg(rng, size),
        "doc" => ole2(rng, size),
        "dcm" => dicom(rng, size),
        _ => text(rng, size).into_bytes(),
    })
}

fn pdf(rng: &mut impl Rng, size: usize) -> Vec<u8> {
    let mut body = String::new();
    while body.len() < size {
        body.push_str(&format!("BT /F1 11 Tf 72 {} Td ({}) Tj ET\n", rng.random_range(40..760), sentence(rng)));
    }
    let mut out = String::from("%PDF-1.7\n%\u{e2}\u{e3}\u{cf}\u{d3}\n");
    out.push_str("1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n");
    out.push_str("2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n");
    out.push_str("3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >> endobj\n");
    out.push_str(&format!("4 0 obj << /Length {} >>\nstream\n{body}endstream\nendobj\n", body.len()));
    out.push_str("trailer << /Root 1 0 R >>\n%%EOF\n");
    out.into_bytes()
}

fn zip_parts(parts: &[(&str, Vec<u8>)], compress: bool) -> Result<Vec<u8>> {
    let method = if compress { CompressionMethod::Deflated } else { CompressionMethod::Stored };
    let options = SimpleFileOptions::default().compression_method(method);
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in parts {
        w.start_file(*name, options).map_err(zip_error)?;
        w.write_all(data).map_err(|e| SensorError::io("writing a zip part", e))?;
    }
    Ok(w.finish().map_err(zip_error)?.into_inner())
}

fn zip_error(e: zip::result::ZipError) -> SensorError {
    SensorError::io("building a zip container", std::io::Error::other(e.to_string()))
}

const CONTENT_TYPES: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#;

fn rels(target: &str, kind: &str) -> Vec<u8> {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/{kind}" Target="{target}"/></Relationships>"#
    )
    .into_bytes()
}

fn docx(rng: &mut impl Rng, size: usize, compress: bool) -> Result<Vec<u8>> {
    let mut body = String::from(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>"#,
    );
    // Deflate shrinks text about fourfold; a real report of this size would
    // also carry an image, so part of the size is an embedded PNG.
    let text_budget = if compress { size.saturating_mul(2) } else { size };
    while body.len() < text_budget {
        body.push_str("<w:p><w:r><w:t>");
        body.push_str(&sentence(rng));
        body.push_str("</w:t></w:r></w:p>");
    }
    body.push_str("</w:body></w:document>");
    let mut parts = vec![
        ("[Content_Types].xml", CONTENT_TYPES.as_bytes().to_vec()),
        ("_rels/.rels", rels("word/document.xml", "officeDocument/2006/relationships/officeDocument")),
        ("word/document.xml", body.into_bytes()),
    ];
    if compress && size > 16 * 1024 {
        parts.push(("word/media/image1.png", png(rng, size / 2)));
    }
    zip_parts(&parts, compress)
}

fn xlsx(rng: &mut impl Rng, size: usize, compress: bool) -> Result<Vec<u8>> {
    let mut sheet = String::from(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#,
    );
    let budget = if compress { size.saturating_mul(4) } else { size };
    let mut row = 1;
    while sheet.len() < budget {
        sheet.push_str(&format!(
            r#"<row r="{row}"><c r="A{row}"><v>{}</v></c><c r="B{row}"><v>{:.2}</v></c><c r="C{row}"><v>{}</v></c></row>"#,
            rng.random_range(1000..99999),
            rng.random_range(0.0..5000.0),
            rng.random_range(1..40)
        ));
        row += 1;
    }
    sheet.push_str("</sheetData></worksheet>");
    let workbook = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheets><sheet name="Sheet1" sheetId="1"/></sheets></workbook>"#;
    zip_parts(
        &[
            ("[Content_Types].xml", CONTENT_TYPES.as_bytes().to_vec()),
            ("_rels/.rels", rels("xl/workbook.xml", "officeDocument/2006/relationships/officeDocument")),
            ("xl/workbook.xml", workbook.as_bytes().to_vec()),
            ("xl/worksheets/sheet1.xml", sheet.into_bytes()),
        ],
        compress,
    )
}

fn csv(rng: &mut impl Rng, size: usize) -> Vec<u8> {
    let mut s = String::from("record,ward,admitted,systolic,diastolic,glucose\n");
    while s.len() < size {
        s.push_str(&format!(
            "{},{},2025-{:02}-{:02},{},{},{:.1}\n",
            rng.random_range(100000..999999),
            rng.random_range(1..30),
            rng.random_range(1..13),
            rng.random_range(1..29),
            rng.random_range(95..180),
            rng.random_range(55..110),
            rng.random_range(3.5..12.0)
        ));
    }
    s.into_bytes()
}

fn random_bytes(rng: &mut impl Rng, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill_bytes(&mut v);
    v
}

fn png(rng: &mut impl Rng, size: usize) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let chunk = |out: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
        out.extend(u32::try_from(data.len()).unwrap_or(0).to_be_bytes());
        out.extend(kind);
        out.extend(data);
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend(crc.sum().to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend(512u32.to_be_bytes());
    ihdr.extend(512u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    // Compressed image data is high-entropy, as in a real PNG.
    let idat = random_bytes(rng, size.saturating_sub(64).max(64));
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn jpeg(rng: &mut impl Rng, size: usize) -> Vec<u8> {
    let mut out = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x48\x00\x48\x00\x00".to_vec();
    out.extend(b"\xff\xdb\x00\x43\x00");
    out.extend((1..=64u8).collect::<Vec<_>>());
    out.extend(b"\xff\xda\x00\x0c\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00");
    let mut scan = random_bytes(rng, size.saturating_sub(out.len() + 2).max(64));
    // Entropy-coded data never holds a bare 0xff marker.
    for b in &mut scan {
        if *b == 0xff {
            *b = 0xfe;
        }
    }
    out.extend(scan);
    out.extend(b"\xff\xd9");
    out
}

fn ole2(rng: &mut impl Rng, size: usize) -> Vec<u8> {
    let mut out = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1".to_vec();
    out.resize(24, 0);
    out.extend([0x3e, 0x00, 0x03, 0x00, 0xfe, 0xff, 0x09, 0x00, 0x06, 0x00]);
    out.resize(512, 0);
    // Word binary text streams are mostly plain characters and zero padding.
    while out.len() < size {
        out.extend(sentence(rng).bytes());
        out.extend([0u8; 24]);
    }
    out
}

fn dicom(rng: &mut impl Rng, size: usize) -> Vec<u8> {
    let mut out = vec![0u8; 128];
    out.extend(b"DICM");
    // (0002,0010) transfer syntax, explicit VR little endian.
    let ts = b"1.2.840.10008.1.2.1\x00";
    out.extend([0x02, 0x00, 0x10, 0x00, b'U', b'I']);
    out.extend(u16::try_from(ts.len()).unwrap_or(0).to_le_bytes());
    out.extend(ts);
    // (7FE0,0010) pixel data: 12-bit samples in 16 bits, smooth like an image.
    out.extend([0xe0, 0x7f, 0x10, 0x00, b'O', b'W', 0, 0]);
    let pixels = size.saturating_sub(out.len() + 4) / 2;
    out.extend(u32::try_from(pixels * 2).unwrap_or(0).to_le_bytes());
    let mut v: i32 = 2048;
    for _ in 0..pixels {
        v = (v + rng.random_range(-24..=24)).clamp(0, 4095);
        out.extend(u16::try_from(v).unwrap_or(0).to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::ContentSample;
    use crate::magic::FileKind;
    use rand::SeedableRng;

    #[test]
    fn every_kind_has_its_magic_and_about_its_size() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let expect = [
            ("pdf", FileKind::Pdf),
            ("docx", FileKind::Zip),
            ("xlsx", FileKind::Zip),
            ("csv", FileKind::Text),
            ("txt", FileKind::Text),
            ("png", FileKind::Png),
            ("jpg", FileKind::Jpeg),
            ("rtf", FileKind::Rtf),
            ("doc", FileKind::Ole2),
            ("dcm", FileKind::Dicom),
        ];
        for (ext, kind) in expect {
            for size in [4096usize, 100_000] {
                let doc = document(&mut rng, ext, size, true).unwrap();
                let s = ContentSample::from_head(doc.get(..doc.len().min(65536)).unwrap(), doc.len() as u64);
                assert_eq!(s.kind, kind, "{ext}");
                assert!(doc.len() >= size / 3 && doc.len() <= size * 2 + 4096, "{ext} {size}: {}", doc.len());
            }
        }
        // Canary variants of Office files stay low-entropy.
        for ext in ["docx", "xlsx", "pdf"] {
            let doc = document(&mut rng, ext, 8192, false).unwrap();
            assert!(!ContentSample::from_head(&doc, doc.len() as u64).is_high_entropy(), "{ext}");
        }
    }
}
