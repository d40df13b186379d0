//! QR codes of download links: SVG for the printable sheet, PNG for sending one by message.
//!
//! The `qrcode` crate makes the matrix (error correction M: a printed code still scans with a
//! smudge on it); the PNG is written with the small `png` encoder, one grey level a pixel.

use qrcode::render::svg;
use qrcode::{Color, EcLevel, QrCode};

/// Light modules around the code, as the QR standard asks, so scanners find its edges.
const QUIET_ZONE: usize = 4;

/// A QR code of `text`.
pub fn encode(text: &str) -> Result<QrCode, String> {
    QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| format!("cannot make a QR code of the link: {e}"))
}

/// An SVG element to inline in HTML (the crate's XML declaration dropped), at least `size`
/// pixels wide; it has a `viewBox`, so CSS can size it.
pub fn svg(code: &QrCode, size: u32) -> String {
    let document = code
        .render::<svg::Color<'_>>()
        .min_dimensions(size, size)
        .quiet_zone(true)
        .build();
    match document.find("<svg") {
        Some(start) => document[start..].to_owned(),
        None => document,
    }
}

/// A PNG of the code, `scale` pixels a module, with its quiet zone; `title` goes into the
/// PNG's `Title` text (the trainee's name, for whoever opens the file).
pub fn png(code: &QrCode, scale: usize, title: &str) -> Result<Vec<u8>, String> {
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE) * scale;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color == Color::Dark {
            let (mx, my) = (i % modules + QUIET_ZONE, i / modules + QUIET_ZONE);
            for y in my * scale..(my + 1) * scale {
                pixels[y * side + mx * scale..y * side + (mx + 1) * scale].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    let side32 = u32::try_from(side).map_err(|_| "the QR code is too large".to_owned())?;
    let mut encoder = png::Encoder::new(&mut out, side32, side32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .add_text_chunk("Title".to_owned(), title.to_owned())
        .map_err(|e| format!("cannot write the PNG: {e}"))?;
    let mut writer = encoder
        .write_header()
        .map_err(|e| format!("cannot write the PNG: {e}"))?;
    writer
        .write_image_data(&pixels)
        .and_then(|()| writer.finish())
        .map_err(|e| format!("cannot write the PNG: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINK: &str =
        "https://gw.example/onboard/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn the_svg_is_an_inline_element() {
        let code = encode(LINK).unwrap();
        let svg = svg(&code, 200);
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{svg}"
        );
    }

    #[test]
    fn the_png_decodes_to_the_code_with_its_quiet_zone() {
        let code = encode(LINK).unwrap();
        let bytes = png(&code, 4, "trainee-01").unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let side = (code.width() + 2 * QUIET_ZONE) * 4;
        assert_eq!(reader.info().width as usize, side);
        let title = &reader.info().uncompressed_latin1_text[0];
        assert_eq!(
            (title.keyword.as_str(), title.text.as_str()),
            ("Title", "trainee-01")
        );
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut pixels).unwrap();
        // The corner is quiet zone (white); the top-left finder pattern starts dark.
        assert_eq!(pixels[0], 255);
        let finder = QUIET_ZONE * 4 * side + QUIET_ZONE * 4;
        assert_eq!(pixels[finder], 0);
    }
}
