//! COPY text -> COPY binary, for the staging rows of a flush.
//!
//! PostgreSQL spends about half of a COPY's CPU in the text input functions (timestamptz_in's
//! date parser above all). The binary format hands it the values as stored. The conversion reads
//! the staging text this crate (or cdc/warehouse/copy.py) wrote, whose forms are known exactly,
//! and gives up (None) on anything it does not read exactly as PostgreSQL's text input would:
//! the flush then sends the text, so a value is never stored other than its text says, and
//! PostgreSQL still judges (and refuses) every value it would have refused.

/// How one staging column is sent: cdc.fastpath.binary_codes names them from the column types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bin {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Bool,
    Text, // text, varchar(n), char(n), json: the bytes (the type's receive applies the typmod)
    Jsonb,
    Numeric,
    Date,
    Timestamp,
    Timestamptz,
    Uuid,
    Null, // a column only ever NULL in the binary form (the unchanged-TOAST list of kept rows)
}

impl Bin {
    pub fn parse(code: &str) -> Option<Bin> {
        Some(match code {
            "int2" => Bin::Int2,
            "int4" => Bin::Int4,
            "int8" => Bin::Int8,
            "float4" => Bin::Float4,
            "float8" => Bin::Float8,
            "bool" => Bin::Bool,
            "text" => Bin::Text,
            "jsonb" => Bin::Jsonb,
            "numeric" => Bin::Numeric,
            "date" => Bin::Date,
            "timestamp" => Bin::Timestamp,
            "timestamptz" => Bin::Timestamptz,
            "uuid" => Bin::Uuid,
            "null" => Bin::Null,
            _ => return None,
        })
    }
}

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
const DAYS_1970_TO_2000: i64 = 10_957;
const US_PER_DAY: i64 = 86_400_000_000;

/// The whole COPY binary stream of a staging text (lines "\n"-terminated, fields tab-separated),
/// or None if one field is not read exactly.
pub fn from_text(kinds: &[Bin], text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 4 + 32);
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&0i32.to_be_bytes()); // flags
    out.extend_from_slice(&0i32.to_be_bytes()); // header extension length
    let fields = i16::try_from(kinds.len()).ok()?.to_be_bytes();
    let bytes = text.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        let end = start + memchr::memchr(b'\n', &bytes[start..])?;
        out.extend_from_slice(&fields);
        let mut line = &text[start..end];
        for (i, &kind) in kinds.iter().enumerate() {
            let tab = memchr::memchr(b'\t', line.as_bytes());
            let field = if i + 1 == kinds.len() {
                if tab.is_some() {
                    return None; // more fields than columns
                }
                std::mem::take(&mut line)
            } else {
                let tab = tab?;
                let field = &line[..tab];
                line = &line[tab + 1..];
                field
            };
            push_field(&mut out, kind, field)?;
        }
        start = end + 1;
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    Some(out)
}

fn push_field(out: &mut Vec<u8>, kind: Bin, field: &str) -> Option<()> {
    if field.as_bytes() == b"\\N" {
        out.extend_from_slice(&(-1i32).to_be_bytes());
        return Some(());
    }
    let at = out.len();
    out.extend_from_slice(&[0; 4]); // the length, filled in below
    match kind {
        Bin::Int2 => out.extend_from_slice(&i16::try_from(integer(field)?).ok()?.to_be_bytes()),
        Bin::Int4 => out.extend_from_slice(&i32::try_from(integer(field)?).ok()?.to_be_bytes()),
        Bin::Int8 => out.extend_from_slice(&integer(field)?.to_be_bytes()),
        Bin::Float4 => {
            let x: f32 = float(field)?.parse().ok()?;
            in_range(field, x.is_infinite(), x == 0.0)?;
            out.extend_from_slice(&x.to_be_bytes());
        }
        Bin::Float8 => {
            let x: f64 = float(field)?.parse().ok()?;
            in_range(field, x.is_infinite(), x == 0.0)?;
            out.extend_from_slice(&x.to_be_bytes());
        }
        Bin::Bool => out.push(match field.as_bytes() {
            [b't'] => 1,
            [b'f'] => 0,
            _ => return None,
        }),
        Bin::Text => unescape(out, field)?,
        Bin::Jsonb => {
            out.push(1); // jsonb's binary format version
            unescape(out, field)?;
        }
        Bin::Numeric => numeric(out, field)?,
        Bin::Date => out.extend_from_slice(&i32::try_from(date(field.as_bytes())?).ok()?.to_be_bytes()),
        Bin::Timestamp => out.extend_from_slice(&timestamp(field.as_bytes(), b' ', false)?.to_be_bytes()),
        Bin::Timestamptz => out.extend_from_slice(&timestamp(field.as_bytes(), b'T', true)?.to_be_bytes()),
        Bin::Uuid => uuid(out, field.as_bytes())?,
        Bin::Null => return None,
    }
    let length = i32::try_from(out.len() - at - 4).ok()?;
    out[at..at + 4].copy_from_slice(&length.to_be_bytes());
    Some(())
}

/// COPY text's escapes, as cdc.warehouse.copy.escape writes them; any other backslash: None.
fn unescape(out: &mut Vec<u8>, field: &str) -> Option<()> {
    let bytes = field.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while let Some(k) = memchr::memchr(b'\\', &bytes[i..]) {
        let at = i + k;
        out.extend_from_slice(&bytes[start..at]);
        out.push(match bytes.get(at + 1)? {
            b'\\' => b'\\',
            b't' => b'\t',
            b'n' => b'\n',
            b'r' => b'\r',
            _ => return None,
        });
        i = at + 2;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    Some(())
}

/// An optional '-' and ASCII digits, as int8in reads them (no spaces, no '+').
fn integer(field: &str) -> Option<i64> {
    let (negative, digits) = match field.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        all => (false, all),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n: i128 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i128::from(d - b'0');
    }
    i64::try_from(if negative { -n } else { n }).ok()
}

/// The float texts cdc writes: Python's repr ("1e+16", "0.1") and PostgreSQL's special values.
/// Rust's parse rounds correctly, as PostgreSQL's strtod does.
fn float(field: &str) -> Option<&str> {
    match field {
        "NaN" | "Infinity" | "-Infinity" => Some(field),
        _ if field.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
            && field.bytes().any(|b| b.is_ascii_digit()) =>
        {
            Some(field)
        }
        _ => None,
    }
}

/// PostgreSQL refuses a number text beyond the type's range, or one that underflows to zero;
/// Rust's parse gives infinity or zero there instead.
fn in_range(field: &str, infinite: bool, zero: bool) -> Option<()> {
    let special = matches!(field, "Infinity" | "-Infinity" | "NaN");
    let mantissa = field.split(['e', 'E']).next().unwrap_or("");
    let nonzero = mantissa.bytes().any(|b| matches!(b, b'1'..=b'9'));
    if (infinite && !special) || (zero && nonzero) {
        return None;
    }
    Some(())
}

/// numeric's binary form (base-10000 digits, weight, sign, display scale) of "[-]digits[.digits]".
fn numeric(out: &mut Vec<u8>, field: &str) -> Option<()> {
    let (negative, body) = match field.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, field),
    };
    let (whole, fraction) = match body.split_once('.') {
        Some((w, f)) if !f.is_empty() => (w, f),
        Some(_) => return None,
        None => (body, ""),
    };
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) || whole.len() + fraction.len() > 4000 {
        return None;
    }
    let whole = whole.trim_start_matches('0');
    let mut groups: Vec<i16> = Vec::with_capacity((whole.len() + fraction.len()) / 4 + 2);
    let lead = whole.len() % 4;
    let group = |s: &[u8]| s.iter().fold(0i16, |n, d| n * 10 + i16::from(d - b'0'));
    if lead > 0 {
        groups.push(group(&whole.as_bytes()[..lead]));
    }
    for chunk in whole.as_bytes()[lead..].chunks(4) {
        groups.push(group(chunk));
    }
    let mut weight = groups.len() as i32 - 1;
    for chunk in fraction.as_bytes().chunks(4) {
        let mut n = group(chunk);
        for _ in chunk.len()..4 {
            n *= 10;
        }
        groups.push(n);
    }
    let leading = groups.iter().take_while(|&&g| g == 0).count();
    groups.drain(..leading);
    weight -= leading as i32;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    let (weight, sign) = if groups.is_empty() { (0, 0x0000u16) } else { (weight, if negative { 0x4000 } else { 0 }) };
    out.extend_from_slice(&i16::try_from(groups.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&i16::try_from(weight).ok()?.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&i16::try_from(fraction.len()).ok()?.to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Some(())
}

fn two(b: &[u8]) -> Option<i64> {
    match b {
        [x @ b'0'..=b'9', y @ b'0'..=b'9'] => Some(i64::from(x - b'0') * 10 + i64::from(y - b'0')),
        _ => None,
    }
}

/// "YYYY-MM-DD" (a year of four digits, 0001-9999 AD, a real day): days since 2000-01-01.
fn date(b: &[u8]) -> Option<i64> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = two(&b[0..2])? * 100 + two(&b[2..4])?;
    let (month, day) = (two(&b[5..7])?, two(&b[8..10])?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if year == 0 || day == 0 || day > days_in_month {
        return None;
    }
    Some(days_from_civil(year, month, day) - DAYS_1970_TO_2000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// "YYYY-MM-DD<sep>HH:MM:SS[.ffffff]" and, zoned, a final 'Z' (Debezium's ZonedTimestamp, in
/// UTC): microseconds since 2000-01-01 00:00 (UTC). Up to six fraction digits: more would be
/// rounded by PostgreSQL's own rules, which are not reproduced.
fn timestamp(b: &[u8], sep: u8, zoned: bool) -> Option<i64> {
    let b = if zoned { b.strip_suffix(b"Z")? } else { b };
    if b.len() < 19 || b[10] != sep || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let days = date(&b[..10])?;
    let (hour, minute, second) = (two(&b[11..13])?, two(&b[14..16])?, two(&b[17..19])?);
    if hour > 23 || minute > 59 || second > 59 {
        return None; // 24:00:00 and leap seconds roll over in PostgreSQL: left to it
    }
    let mut micros = 0;
    if b.len() > 19 {
        let fraction = b[19..].strip_prefix(b".")?;
        if fraction.is_empty() || fraction.len() > 6 || !fraction.iter().all(u8::is_ascii_digit) {
            return None;
        }
        micros = fraction.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
        micros *= 10i64.pow(6 - fraction.len() as u32);
    }
    Some(days * US_PER_DAY + ((hour * 60 + minute) * 60 + second) * 1_000_000 + micros)
}

/// The canonical 8-4-4-4-12 hex form (either case): the 16 bytes.
fn uuid(out: &mut Vec<u8>, b: &[u8]) -> Option<()> {
    if b.len() != 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut hex = b.iter().copied().filter(|&c| c != b'-');
    for _ in 0..16 {
        let (high, low) = (nibble(hex.next()?)?, nibble(hex.next()?)?);
        out.push(high << 4 | low);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(kind: Bin, text: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        push_field(&mut out, kind, text).map(|()| out[4..].to_vec())
    }

    #[test]
    fn numeric_groups() {
        // 12345.678: weight 1, digits [1, 2345, 6780], dscale 3
        assert_eq!(field(Bin::Numeric, "12345.678"), Some(vec![0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 9, 41, 26, 124]));
        assert_eq!(field(Bin::Numeric, "-0.00"), Some(vec![0, 0, 0, 0, 0, 0, 0, 2]));
        assert_eq!(field(Bin::Numeric, "0.0001"), Some(vec![0, 1, 255, 255, 0, 0, 0, 4, 0, 1]));
        assert_eq!(field(Bin::Numeric, "1e5"), None);
        assert_eq!(field(Bin::Numeric, "NaN"), None);
    }

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(date(b"2000-01-01"), Some(0));
        assert_eq!(date(b"1999-12-31"), Some(-1));
        assert_eq!(date(b"2024-02-29"), Some(8825));
        assert_eq!(date(b"2023-02-29"), None);
        assert_eq!(date(b"0000-01-01"), None);
        assert_eq!(timestamp(b"2000-01-01 00:00:01.5", b' ', false), Some(1_500_000));
        assert_eq!(timestamp(b"2000-01-01T00:00:00.000001Z", b'T', true), Some(1));
        assert_eq!(timestamp(b"2000-01-01T00:00:00Z", b' ', true), None);
        assert_eq!(timestamp(b"2000-01-01 24:00:00", b' ', false), None);
        assert_eq!(timestamp(b"2000-01-01 00:00:00.1234567", b' ', false), None);
    }

    #[test]
    fn floats_out_of_range_are_left_to_the_text() {
        assert_eq!(field(Bin::Float8, "1e309"), None);
        assert_eq!(field(Bin::Float8, "1e-400"), None);
        assert_eq!(field(Bin::Float4, "1e39"), None);
        assert_eq!(field(Bin::Float8, "-Infinity"), Some(f64::NEG_INFINITY.to_be_bytes().to_vec()));
        assert_eq!(field(Bin::Float8, "0.0e5"), Some(0f64.to_be_bytes().to_vec()));
        assert_eq!(field(Bin::Float4, "0.1"), Some(0.1f32.to_be_bytes().to_vec()));
        assert_eq!(field(Bin::Float8, "inf"), None);
    }

    #[test]
    fn text_escapes() {
        assert_eq!(field(Bin::Text, "a\\tb\\\\c\\nd\\re"), Some(b"a\tb\\c\nd\re".to_vec()));
        assert_eq!(field(Bin::Text, "a\\x41"), None);
        assert_eq!(field(Bin::Text, "a\\"), None);
    }
}
