//! The schema's `format`s as the jsonschema crate (0.61) checks them, for the fast path. `date-time` follows its
//! rules exactly (RFC 3339 with its leap-second rule); `email` accepts a subset of what it accepts, the plain
//! addresses real orders carry, and answers false for the rest (quoted local parts, display names, address
//! literals, non-ASCII, punycode labels), which the reference path then decides.

/// RFC 3339 `date-time`: a full date, `T` (either case), a full time with its offset.
pub(crate) fn is_date_time(text: &str) -> bool {
    // The first `T` separates, as in the crate: a date never holds one.
    let Some(t) = text.bytes().position(|b| b == b'T' || b == b't') else {
        return false;
    };
    is_full_date(&text.as_bytes()[..t]) && is_full_time(&text.as_bytes()[t + 1..])
}

/// `YYYY-MM-DD`, the day within its month.
fn is_full_date(date: &[u8]) -> bool {
    let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = *date else {
        return false;
    };
    let (Some(year), Some(month), Some(day)) = (
        digits(&[y0, y1, y2, y3]),
        digits(&[m0, m1]),
        digits(&[d0, d1]),
    ) else {
        return false;
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// `HH:MM:SS[.frac](Z|±HH:MM)`. A leap second (`:60`) is allowed only at 23:59 UTC.
fn is_full_time(time: &[u8]) -> bool {
    let [h0, h1, b':', m0, m1, b':', s0, s1, ref rest @ ..] = *time else {
        return false;
    };
    let (Some(hour), Some(minute), Some(second)) =
        (digits(&[h0, h1]), digits(&[m0, m1]), digits(&[s0, s1]))
    else {
        return false;
    };
    if hour > 23 || minute > 59 || second > 60 {
        return false;
    }
    let rest = match rest {
        [b'.', fraction @ ..] => {
            let count = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
            if count == 0 {
                return false;
            }
            &fraction[count..]
        }
        _ => rest,
    };
    match *rest {
        [b'Z' | b'z'] => second != 60 || (hour == 23 && minute == 59),
        [sign @ (b'+' | b'-'), oh0, oh1, b':', om0, om1] => {
            let (Some(offset_hours), Some(offset_minutes)) =
                (digits(&[oh0, oh1]), digits(&[om0, om1]))
            else {
                return false;
            };
            if offset_hours > 23 || offset_minutes > 59 {
                return false;
            }
            if second != 60 {
                return true;
            }
            // The local time minus the offset must be 23:59 UTC.
            let offset = offset_hours * 60 + offset_minutes;
            let local = hour * 60 + minute;
            let utc = if sign == b'+' {
                local + 24 * 60 - offset
            } else {
                local + offset
            };
            utc % (24 * 60) == 23 * 60 + 59
        }
        _ => false,
    }
}

/// The number the ASCII digits spell, or `None` if any byte is not a digit.
fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
    })
}

/// A plain address: a dot-atom local part of ASCII `atext` (RFC 5322), `@`, and a host name of ASCII letters,
/// digits and hyphens. What this accepts the crate accepts; what it refuses the crate may still accept.
pub(crate) fn is_plain_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    is_dot_atom(local) && is_host_name(domain)
}

fn is_dot_atom(local: &str) -> bool {
    (1..=64).contains(&local.len())
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext))
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

fn is_host_name(domain: &str) -> bool {
    (1..=253).contains(&domain.len()) && domain.split('.').all(|l| is_label(l.as_bytes()))
}

/// A host name label that needs no IDNA check: letters, digits and inner hyphens, and not `??--` (a label with
/// hyphens third and fourth must be a valid punycode A-label, which is left to the crate).
fn is_label(label: &[u8]) -> bool {
    let (Some(first), Some(last)) = (label.first(), label.last()) else {
        return false;
    };
    label.len() <= 63
        && first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && label.get(2..4) != Some(b"--")
}

#[cfg(test)]
mod tests {
    use jsonschema::Validator;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;

    fn format_validator(format: &str) -> Validator {
        jsonschema::options()
            .should_validate_formats(true)
            .build(&json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "format": format}))
            .expect("the format schema compiles")
    }

    /// Strings near the date-time grammar: digits, separators and offsets in any order, plus a few strays.
    fn date_time_like() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,3})?([Zz]|[+-][0-9]{2}:[0-9]{2})",
            "(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T(2[0-3]|[01][0-9]):(5[89]|[0-5][0-9]):(60|59|[0-5][0-9])(\\.[0-9]{1,3})?(Z|[+-](2[0-3]|[01][0-9]):(59|00|30))",
            "[0-9T:Zz.+\\-]{0,30}",
            ".{0,30}",
        ]
    }

    /// Strings near the address grammar, plain and not.
    fn email_like() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9.+_-]{0,10}@[a-z0-9.-]{0,12}",
            "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~.-]{1,8}@([a-zA-Z0-9-]{1,5}\\.){0,3}[a-zA-Z0-9-]{1,5}",
            "[a-z]{1,4}@xn--[a-z0-9-]{1,8}\\.[a-z]{2,3}",
            "(\"[a-z @]{0,4}\"|[a-z]{1,4}|[a-z]{1,3} <[a-z]{1,3})@(\\[[0-9.]{7,11}\\]|[a-z]{1,4}\\.[a-z]{2}>?)",
            ".{0,20}",
        ]
    }

    #[test]
    fn date_times_at_the_edges_answer_as_the_crate_does() {
        // Arrange
        let validator = format_validator("date-time");
        let cases = [
            "2021-11-26T06:22:19Z",
            "2021-11-26t06:22:19z",
            "2021-11-26 06:22:19Z",
            "2021-11-26T06:22:19.123456+03:00",
            "2021-11-26T06:22:19.+03:00",
            "2021-11-26T06:22:19",
            "2024-02-29T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2000-02-29T00:00:00Z",
            "2021-04-31T00:00:00Z",
            "2021-00-10T00:00:00Z",
            "2021-13-10T00:00:00Z",
            "2021-12-00T00:00:00Z",
            "2016-12-31T23:59:60Z",
            "2016-12-31T22:59:60Z",
            "2016-12-31T23:59:60+01:00",
            "2016-12-31T00:59:60+01:00",
            "2016-12-31T15:59:60-08:00",
            "2016-12-31T23:59:60-00:00",
            "2021-11-26T24:00:00Z",
            "2021-11-26T06:60:00Z",
            "2021-11-26T06:22:19+24:00",
            "2021-11-26T06:22:19+03:60",
            "2021-11-26T06:22:19+0300",
            "2021-11-26T06:22:19Z ",
            "2021-11-26T06:22:19Z\n",
            "２０２１-11-26T06:22:19Z",
            "",
            "T",
        ];
        for case in cases {
            // Act
            let ours = is_date_time(case);

            // Assert
            assert_eq!(ours, validator.is_valid(&json!(case)), "{case:?}");
        }
    }

    #[test]
    fn plain_addresses_are_accepted_and_others_left_to_the_crate() {
        // Arrange
        let validator = format_validator("email");
        let plain = [
            "test@gmail.com",
            "a@b",
            "first.last+tag@sub.example.co",
            "x!#$%&'*+/=?^_`{|}~-@a-1.b2",
        ];
        let left = [
            "\"quoted\"@example.com",
            "Name <a@example.com>",
            "a@[127.0.0.1]",
            "a@xn--nxasmq6b.com",
            "é@example.com",
            "a@ab--c.com",
            ".a@example.com",
            "a..b@example.com",
            "a@-example.com",
            "a@example.com.",
            "a@b@c",
            "@example.com",
            "a@",
        ];
        for case in plain {
            assert!(is_plain_email(case), "{case:?} is plain");
            assert!(
                validator.is_valid(&json!(case)),
                "{case:?} the crate accepts"
            );
        }
        for case in left {
            assert!(!is_plain_email(case), "{case:?} is left to the crate");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn date_time_answers_as_the_crate_does(text in date_time_like()) {
            let validator = format_validator("date-time");
            prop_assert_eq!(is_date_time(&text), validator.is_valid(&Value::String(text.clone())), "{:?}", text);
        }

        #[test]
        fn every_plain_email_is_one_the_crate_accepts(text in email_like()) {
            let validator = format_validator("email");
            if is_plain_email(&text) {
                prop_assert!(validator.is_valid(&Value::String(text.clone())), "{:?}", text);
            }
        }
    }
}
