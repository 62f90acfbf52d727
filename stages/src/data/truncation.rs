//! Telling a complete JPEG from one cut short, before decoding it.
//!
//! The JPEG decoder (`zune-jpeg`, as the `image` crate runs it) is lenient: when the data
//! ends early it paints the rest of the image gray and reports success, so half a file loads
//! as half an X-ray. Pillow, which the loader otherwise matches, refuses such a file ("image
//! file is truncated") unless `ImageFile.LOAD_TRUNCATED_IMAGES` is set. The decoder's strict
//! mode is not reachable through the `image` crate, and would also refuse the damage Pillow
//! tolerates (stray bytes between segments, unknown markers), so the file's structure is
//! walked here instead: every segment must fit in the file, and after the last scan's
//! entropy-coded data the end-of-image marker (`FF D9`) must follow.
//!
//! This is slightly stricter than Pillow in one case: a baseline JPEG missing only its final
//! two bytes (the marker itself) loads in Pillow and is refused here. Such a file was cut
//! short too, and the allowance to load truncated images covers it.
//!
//! PNG needs no such check: the `png` decoder already fails when image data is missing.

/// Where a JPEG's data stops short, or `None` when it is complete (or not a JPEG at all: the
/// decoder reports that).
pub fn jpeg_truncation(bytes: &[u8]) -> Option<String> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let n = bytes.len();
    let cut = |what: &str| Some(format!("the JPEG data ends after {n} bytes, {what}"));
    let mut i = 2;
    loop {
        // Find the next marker. Bytes that are not one are skipped, as libjpeg skips them
        // ("extraneous bytes before marker"); any number of 0xFF fill bytes may precede it.
        while i < n && bytes[i] != 0xFF {
            i += 1;
        }
        while i < n && bytes[i] == 0xFF {
            i += 1;
        }
        if i >= n {
            return cut("before its end-of-image marker");
        }
        let marker = bytes[i];
        i += 1;
        match marker {
            0xD9 => return None,
            // Markers without a length: SOI again, TEM, RSTn; and 0x00, which is not a
            // marker but a stuffed 0xFF byte outside a scan (damage the decoder tolerates).
            0xD8 | 0x01 | 0xD0..=0xD7 | 0x00 => continue,
            _ => {
                if i + 2 > n {
                    return cut(&format!("inside the length of segment FF{marker:02X}"));
                }
                let len = usize::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
                if i + len > n {
                    return cut(&format!(
                        "inside segment FF{marker:02X} at byte {} (which claims {len} bytes)",
                        i - 2
                    ));
                }
                i += len.max(2);
                if marker == 0xDA {
                    match end_of_scan(bytes, i) {
                        Some(next) => i = next,
                        None => return cut("inside its scan data"),
                    }
                }
            }
        }
    }
}

/// The offset of the marker ending the entropy-coded data that starts at `start`, or `None`
/// when the data runs to the end of the file. Inside a scan 0xFF is
/// followed by 0x00 (a stuffed data byte), by 0xD0-0xD7 (a restart marker), or by fill
/// bytes; anything else is the next marker.
fn end_of_scan(bytes: &[u8], start: usize) -> Option<usize> {
    let n = bytes.len();
    let mut i = start;
    loop {
        while i < n && bytes[i] != 0xFF {
            i += 1;
        }
        match bytes.get(i + 1)? {
            0x00 | 0xD0..=0xD7 => i += 2,
            0xFF => i += 1,
            _ => return Some(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, one APP0 segment, a frame header, one scan with stuffed and restart bytes, EOI.
    fn minimal() -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        j.extend([0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB]); // APP0, 2 payload bytes
        j.extend([0xFF, 0xC0, 0x00, 0x05, 8, 0, 1]); // SOF0 (short but well-formed)
        j.extend([0xFF, 0xDA, 0x00, 0x03, 0x01]); // SOS header
        j.extend([0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0xFF, 0xFF, 0x00]); // scan data
        j.extend([0xFF, 0xD9]);
        j
    }

    #[test]
    fn a_complete_file_passes_and_every_cut_is_found() {
        let full = minimal();
        assert_eq!(jpeg_truncation(&full), None);
        for len in 2..full.len() {
            let msg = jpeg_truncation(&full[..len]);
            assert!(msg.is_some(), "cut at {len} of {} not found", full.len());
            assert!(msg.unwrap().contains(&format!("after {len} bytes")));
        }
    }

    #[test]
    fn bytes_after_the_end_marker_and_between_segments_are_tolerated() {
        let mut trailing = minimal();
        trailing.extend(b"trailing garbage");
        assert_eq!(jpeg_truncation(&trailing), None);
        let mut junk = minimal();
        junk.splice(2..2, [0x00, 0x11]); // stray bytes after the SOI
        assert_eq!(jpeg_truncation(&junk), None);
    }

    #[test]
    fn an_end_marker_inside_a_segment_does_not_count() {
        // An EXIF thumbnail is a whole JPEG, end marker included, inside an APP1 segment: a
        // file cut in its main scan still lacks its own end marker.
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x06, 0xFF, 0xD8, 0xFF, 0xD9];
        j.extend([0xFF, 0xDA, 0x00, 0x03, 0x01, 0x12, 0x34]);
        let msg = jpeg_truncation(&j).expect("cut in the scan");
        assert!(msg.contains("scan data"), "{msg}");
        j.extend([0xFF, 0xD9]);
        assert_eq!(jpeg_truncation(&j), None);
    }

    #[test]
    fn progressive_scans_are_walked_one_after_another() {
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xC2, 0x00, 0x03, 0x08];
        for _ in 0..3 {
            j.extend([0xFF, 0xC4, 0x00, 0x03, 0x00]); // DHT between scans
            j.extend([0xFF, 0xDA, 0x00, 0x03, 0x01, 0x55, 0xFF, 0x00, 0x66]);
        }
        let full = [j.clone(), vec![0xFF, 0xD9]].concat();
        assert_eq!(jpeg_truncation(&full), None);
        // Cut after the second scan: its data ends where the third scan's tables would start.
        let second_end = j.len() - 14;
        assert!(jpeg_truncation(&j[..second_end]).is_some());
        assert!(jpeg_truncation(&j).is_some());
    }

    #[test]
    fn not_a_jpeg_is_left_to_the_decoder() {
        assert_eq!(jpeg_truncation(b"\x89PNG\r\n\x1a\n"), None);
        assert_eq!(jpeg_truncation(b""), None);
    }
}
