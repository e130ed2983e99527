//! QR codes as SVG, for showing `otpauth://` enrolment URIs to a phone's
//! authenticator app. It owns turning text into a compact, self-contained
//! SVG; it must not log, store or embed the text in readable form (an
//! enrolment URI carries the TOTP secret, so the SVG is as secret as the
//! URI: send it only to the enrolling user, never to a log).
//!
//! Error correction level M (15 % of the code can be lost), the 4-module
//! quiet zone the QR specification asks for, dark modules black on white.
//! The SVG's view box is in modules and each module is drawn `MODULE_PX`
//! CSS pixels wide (the page may scale it); dark modules are one path of
//! horizontal runs, so a typical enrolment URI gives a few KiB of SVG.

use std::fmt::Write;

use qrcode::{Color, EcLevel, QrCode};

/// The longest text accepted, in bytes: an `otpauth://` URI is a few
/// hundred bytes; a level-M code holds at most 2,331 bytes.
pub const MAX_INPUT: usize = 2048;
/// Light modules around the code, per the QR specification.
pub const QUIET_ZONE: usize = 4;
/// Rendered size of one module, in CSS pixels: a typical
/// enrolment URI gives a code of 230–300 pixels, easy to scan off a screen.
pub const MODULE_PX: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum QrError {
    #[error("the text is too long for a QR code ({len} bytes, at most {MAX_INPUT})")]
    TooLong { len: usize },
    #[error("the text cannot be encoded as a QR code: {0}")]
    Encode(#[from] qrcode::types::QrError),
}

/// The QR code of `text` as an SVG document (an `<svg>` element, no XML
/// declaration, so it can go inline in HTML or be served as
/// `image/svg+xml`). The same text always gives the same SVG.
pub fn svg(text: &str) -> Result<String, QrError> {
    if text.len() > MAX_INPUT {
        return Err(QrError::TooLong { len: text.len() });
    }
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)?;
    Ok(render(code.width(), &code.to_colors()))
}

/// Render a square module matrix (row by row, `width` modules a side).
fn render(width: usize, modules: &[Color]) -> String {
    let side = width + 2 * QUIET_ZONE;
    let px = side * MODULE_PX;
    let mut out = String::with_capacity(256 + modules.len() * 2);
    // Writing to a String cannot fail; the results are ignored below.
    let _ = write!(
        out,
        concat!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{px}" height="{px}" viewBox="0 0 {side} {side}""#,
            r#" shape-rendering="crispEdges" role="img" aria-label="QR code">"#,
            r##"<rect width="{side}" height="{side}" fill="#fff"/><path fill="#000" d=""##,
        ),
        px = px,
        side = side,
    );
    for (y, row) in modules.chunks(width.max(1)).enumerate() {
        let mut x = 0;
        while x < row.len() {
            let run = row.iter().skip(x).take_while(|&&c| c == Color::Dark).count();
            if run > 0 {
                let _ = write!(out, "M{} {}h{run}v1h-{run}z", x + QUIET_ZONE, y + QUIET_ZONE);
                x += run;
            } else {
                x += 1;
            }
        }
    }
    out.push_str(r#""/></svg>"#);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_dark_modules_become_one_subpath() {
        let (d, l) = (Color::Dark, Color::Light);
        let svg = render(3, &[d, d, l, l, l, l, l, d, d]);
        assert!(svg.contains(r#"d="M4 4h2v1h-2zM5 6h2v1h-2z""#), "{svg}");
        assert!(svg.contains(r#"viewBox="0 0 11 11""#), "{svg}");
        assert!(svg.contains(r#"width="55" height="55""#), "{svg}");
    }

    #[test]
    fn too_long_text_is_refused() {
        assert!(matches!(svg(&"a".repeat(MAX_INPUT + 1)), Err(QrError::TooLong { len }) if len == MAX_INPUT + 1));
        assert!(svg(&"a".repeat(MAX_INPUT)).is_ok());
    }
}
