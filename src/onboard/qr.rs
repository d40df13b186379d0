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

/// A PNG of the code, `scale` pixels a module, with its quiet zone, and `title` (the trainee's
/// name) written under it, so whoever receives the picture sees whose kit it is; `title` also
/// goes into the PNG's `Title` text.
pub fn png(code: &QrCode, scale: usize, title: &str) -> Result<Vec<u8>, String> {
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE) * scale;
    let label = label_height(side, title);
    let height = side + label;
    let mut pixels = vec![255u8; side * height];
    for (i, color) in colors.iter().enumerate() {
        if *color == Color::Dark {
            let (mx, my) = (i % modules + QUIET_ZONE, i / modules + QUIET_ZONE);
            for y in my * scale..(my + 1) * scale {
                pixels[y * side + mx * scale..y * side + (mx + 1) * scale].fill(0);
            }
        }
    }
    draw_label(&mut pixels[side * side..], side, title);
    let mut out = Vec::new();
    let width32 = u32::try_from(side).map_err(|_| "the QR code is too large".to_owned())?;
    let height32 = u32::try_from(height).map_err(|_| "the QR code is too large".to_owned())?;
    let mut encoder = png::Encoder::new(&mut out, width32, height32);
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

/// Glyph scale of the label: as large as fits the picture's width, at most 4 (32 px letters).
fn glyph_scale(width: usize, text: &str) -> usize {
    let chars = text.chars().count().max(1);
    (width / (chars * 8 + 8)).clamp(1, 4)
}

/// Height of the band under the code that holds the label (its letters and a margin).
fn label_height(width: usize, text: &str) -> usize {
    (8 + 4) * glyph_scale(width, text)
}

/// Writes `text` centred in `band` (`width` pixels a row), black on white, in an 8x8 bitmap
/// font; a character the font lacks is drawn as `?`. Letters that do not fit are cut.
fn draw_label(band: &mut [u8], width: usize, text: &str) {
    use font8x8::UnicodeFonts;
    let scale = glyph_scale(width, text);
    let chars: Vec<char> = text.chars().collect();
    let text_width = chars.len() * 8 * scale;
    let left = width.saturating_sub(text_width) / 2;
    let top = 2 * scale;
    for (n, c) in chars.iter().enumerate() {
        let glyph = font8x8::BASIC_FONTS
            .get(*c)
            .or_else(|| font8x8::BASIC_FONTS.get('?'))
            .unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) == 0 {
                    continue;
                }
                let x0 = left + (n * 8 + col) * scale;
                for dy in 0..scale {
                    let y = top + row * scale + dy;
                    let start = y * width + x0;
                    if x0 + scale <= width && start + scale <= band.len() {
                        band[start..start + scale].fill(0);
                    }
                }
            }
        }
    }
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
        // Under the code, a band with the name written in it.
        let height = reader.info().height as usize;
        assert!(height > side, "a label band under the code");
        let band = &pixels[side * side..side * height];
        let inked = band.iter().filter(|p| **p == 0).count();
        assert!(inked > 50, "the name is drawn ({inked} dark pixels)");
    }

    #[test]
    fn a_name_is_drawn_with_the_pixels_of_its_letters() {
        let width = 200;
        let mut one = vec![255u8; width * label_height(width, "a")];
        draw_label(&mut one, width, "a");
        let mut two = vec![255u8; width * label_height(width, "ab")];
        draw_label(&mut two, width, "ab");
        let ink = |band: &[u8]| band.iter().filter(|p| **p == 0).count();
        assert!(ink(&one) > 0 && ink(&two) > ink(&one));
        let mut long = vec![255u8; width * label_height(width, &"x".repeat(60))];
        draw_label(&mut long, width, &"x".repeat(60)); // cut, never out of bounds
    }
}
