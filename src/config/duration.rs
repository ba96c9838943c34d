//! Durations in the configuration: `"1s"`, `"500ms"`, `"24h"`, or a bare
//! integer meaning seconds (as ProcessSaver's configuration had them).

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
    pub fn as_millis(self) -> u64 {
        self.0.as_millis() as u64
    }
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// The longest duration procward accepts anywhere: a retry window of a
/// year is already more than anyone means, and every deadline computed
/// from a duration stays far from overflowing.
pub const MAX: Duration = Duration::from_secs(366 * 86_400);
pub const MAX_TEXT: &str = "366 days";

fn bounded(d: Duration, s: &str) -> Result<Duration, String> {
    if d > MAX {
        Err(format!("duration \"{s}\" is too long: at most {MAX_TEXT}"))
    } else {
        Ok(d)
    }
}

pub fn parse(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|_| {
        format!("invalid duration \"{s}\": write a number with a unit, like \"500ms\", \"10s\", \"5m\" or \"24h\"")
    })?;
    bounded(d, s)
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration like \"10s\" or a number of seconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse(v).map(Dur).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                if v < 0 {
                    return Err(E::custom(format!("negative duration {v}")));
                }
                self.visit_u64(v as u64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                bounded(Duration::from_secs(v), &v.to_string())
                    .map(Dur)
                    .map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_seconds() {
        assert_eq!(parse("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse("24h").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse("5 parsecs").is_err());
        assert!(parse("366days").is_ok());
        assert!(parse("367days").unwrap_err().contains("at most 366 days"));
        assert!(parse("99999999999999999s").is_err());
        let d: Dur = toml::from_str::<toml::Table>("d = 30")
            .unwrap()
            .get("d")
            .unwrap()
            .clone()
            .try_into()
            .unwrap();
        assert_eq!(d, Dur::secs(30));
    }
}
