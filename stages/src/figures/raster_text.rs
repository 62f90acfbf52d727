//! Text in the PNG figures, rasterised with each glyph where the font puts it.
//!
//! plotters 0.3.7's `ab_glyph` text renderer draws every glyph flush against the pen
//! position, dropping the glyph's left side bearing, so "p=0.20" comes out as "p=0. 20" and
//! "NORMAL" as "N ORMAL". [`GlyphBackend`] wraps a bitmap backend and draws text itself with
//! the bearing kept (and kerning, sub-pixel pen positions); every other call passes through.
//! It keeps plotters' layout box, so anchors and chart layout are unchanged. SVG output needs
//! no such fix: the viewer draws its text.

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, ScaleFont};
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind,
    FontStyle,
};

/// The embedded faces, parsed once: regular and bold DejaVu Sans.
fn faces() -> Option<&'static (FontRef<'static>, FontRef<'static>)> {
    static FACES: OnceLock<Option<(FontRef<'static>, FontRef<'static>)>> = OnceLock::new();
    FACES
        .get_or_init(|| {
            let regular = FontRef::try_from_slice(dejavu::sans::regular()).ok()?;
            let bold = FontRef::try_from_slice(dejavu::sans::bold()).ok()?;
            Some((regular, bold))
        })
        .as_ref()
}

/// A drawing backend that renders text with correctly placed glyphs (see the module docs).
pub(crate) struct GlyphBackend<B>(pub(crate) B);

type BackendResult<B> = Result<(), DrawingErrorKind<<B as DrawingBackend>::ErrorType>>;

impl<B: DrawingBackend> DrawingBackend for GlyphBackend<B> {
    type ErrorType = B::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }

    fn ensure_prepared(&mut self) -> BackendResult<B> {
        self.0.ensure_prepared()
    }

    fn present(&mut self) -> BackendResult<B> {
        self.0.present()
    }

    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> BackendResult<B> {
        self.0.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> BackendResult<B> {
        self.0.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> BackendResult<B> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> BackendResult<B> {
        self.0.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> BackendResult<B> {
        self.0.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> BackendResult<B> {
        self.0.fill_polygon(vert, style)
    }

    fn blit_bitmap(&mut self, pos: BackendCoord, size: (u32, u32), src: &[u8]) -> BackendResult<B> {
        self.0.blit_bitmap(pos, size, src)
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> BackendResult<B> {
        let Some((regular, bold)) = faces() else {
            // Cannot happen with the bytes compiled in; fall back rather than lose the text.
            return self.0.draw_text(text, style, pos);
        };
        let color = style.color();
        if color.alpha == 0.0 || text.is_empty() {
            return Ok(());
        }
        let face = match style.style() {
            FontStyle::Bold => bold,
            _ => regular,
        };
        let font = face.as_scaled(style.size() as f32);

        // Anchor against plotters' own layout box, the one its chart layout reserved.
        let ((min_x, min_y), (max_x, max_y)) = style
            .layout_box(text)
            .map_err(|e| DrawingErrorKind::FontError(Box::new(e)))?;
        let (width, height) = (max_x - min_x, max_y - min_y);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Center => -width / 2,
            HPos::Right => -width,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        // Put the baseline where capital letters sit centred in the box.
        let cap_height = font
            .outline_glyph(font.scaled_glyph('H'))
            .map_or(font.ascent() * 0.75, |g| -g.px_bounds().min.y);
        let baseline = (height as f32 + cap_height) / 2.0;

        let transform = style.transform();
        let (canvas_w, canvas_h) = self.get_size();
        let mut pen = 0.0f32;
        let mut previous = None;
        for c in text.chars() {
            let id = font.glyph_id(c);
            if let Some(previous) = previous {
                pen += font.kern(previous, id);
            }
            previous = Some(id);
            let glyph = id.with_scale_and_position(font.scale(), point(pen, baseline));
            pen += font.h_advance(id);
            let Some(outline) = font.outline_glyph(glyph) else {
                continue; // spaces have no outline
            };
            let bounds = outline.px_bounds();
            let mut pixels = Vec::new();
            outline.draw(|x, y, coverage| {
                if coverage > 0.0 {
                    pixels.push((
                        bounds.min.x as i32 + x as i32,
                        bounds.min.y as i32 + y as i32,
                        coverage,
                    ));
                }
            });
            for (x, y, coverage) in pixels {
                let (x, y) = transform.transform(x + dx - min_x, y + dy - min_y);
                let (x, y) = (pos.0 + x, pos.1 + y);
                if x >= 0 && y >= 0 && x < canvas_w as i32 && y < canvas_h as i32 {
                    self.0.draw_pixel(
                        (x, y),
                        BackendColor {
                            alpha: color.alpha * f64::from(coverage.min(1.0)),
                            rgb: color.rgb,
                        },
                    )?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};

    use super::GlyphBackend;
    use crate::figures::{bold, font, text};

    const W: u32 = 240;
    const H: u32 = 120;

    /// Draws `s` centred at the canvas centre and returns the inked pixels' bounding box
    /// (min x, min y, max x, max y) and how many pixels were inked.
    fn ink(s: &str, style: TextStyle<'static>) -> ((u32, u32, u32, u32), usize) {
        font::ensure_registered().unwrap();
        let mut buffer = vec![255u8; (W * H * 3) as usize];
        {
            let backend = GlyphBackend(BitMapBackend::with_buffer(&mut buffer, (W, H)));
            let root = backend.into_drawing_area();
            let centred = style.pos(Pos::new(HPos::Center, VPos::Center));
            root.draw(&Text::new(s, (W as i32 / 2, H as i32 / 2), centred))
                .unwrap();
            root.present().unwrap();
        }
        let (mut lo_x, mut lo_y, mut hi_x, mut hi_y, mut count) = (W, H, 0, 0, 0);
        for (i, px) in buffer.chunks(3).enumerate() {
            if px[0] < 128 {
                let (x, y) = (i as u32 % W, i as u32 / W);
                (lo_x, lo_y, hi_x, hi_y) = (lo_x.min(x), lo_y.min(y), hi_x.max(x), hi_y.max(y));
                count += 1;
            }
        }
        ((lo_x, lo_y, hi_x, hi_y), count)
    }

    #[test]
    fn centred_text_is_centred() {
        let ((x0, y0, x1, y1), _) = ink("NORMAL", text(20.0));
        // Capitals 20 px tall type: about 12 px high, centred on (120, 60) within 2 px.
        assert!((x0 + x1).abs_diff(W) <= 4, "{x0}..{x1}");
        assert!((y0 + y1).abs_diff(H) <= 4, "{y0}..{y1}");
        assert!((11..=15).contains(&(y1 - y0)), "cap height {}", y1 - y0);
    }

    #[test]
    fn side_bearings_are_kept() {
        // plotters' own renderer drew the period flush against the "0", leaving a gap before
        // the "2" that made "0.20" read "0. 20"; here the digits sit evenly either side.
        let gaps = |s: &str| {
            let mut buffer = vec![255u8; (W * H * 3) as usize];
            {
                let backend = GlyphBackend(BitMapBackend::with_buffer(&mut buffer, (W, H)));
                let root = backend.into_drawing_area();
                root.draw(&Text::new(s, (10, 30), text(64.0))).unwrap();
                root.present().unwrap();
            }
            // Columns with ink, then the widths of the blank runs between glyphs.
            let inked: Vec<bool> = (0..W)
                .map(|x| (0..H).any(|y| buffer[((y * W + x) * 3) as usize] < 128))
                .collect();
            let first = inked.iter().position(|&i| i).unwrap();
            let last = inked.iter().rposition(|&i| i).unwrap();
            let mut runs = Vec::new();
            let mut run = 0u32;
            for &i in &inked[first..=last] {
                if i {
                    if run > 0 {
                        runs.push(run);
                    }
                    run = 0;
                } else {
                    run += 1;
                }
            }
            runs
        };
        let runs = gaps("0.2");
        assert_eq!(runs.len(), 2, "{runs:?}");
        assert!(
            runs[0].abs_diff(runs[1]) <= 2,
            "uneven gaps around the period: {runs:?}"
        );
    }

    #[test]
    fn bold_is_bolder_and_rotation_turns_the_box() {
        let (_, regular) = ink("COVID", text(20.0));
        let (_, heavy) = ink("COVID", bold(20.0));
        assert!(heavy > regular * 5 / 4, "bold {heavy} vs regular {regular}");
        let ((x0, y0, x1, y1), _) =
            ink("True label", text(20.0).transform(FontTransform::Rotate270));
        assert!(y1 - y0 > 3 * (x1 - x0), "rotated box {x0},{y0}..{x1},{y1}");
    }
}
