//! Reading numbers and flags out of BSON values the way the server does:
//! any numeric type counts, a double is truncated toward zero.

use bson::{Bson, RawBsonRef};

/// A numeric value (int32, int64, finite double) as an i64. Decimals are
/// not read here: drivers never put them in the command fields holdfast
/// reads, and the command scan skips them without decoding.
pub fn as_i64(v: RawBsonRef<'_>) -> Option<i64> {
    match v {
        RawBsonRef::Int32(i) => Some(i as i64),
        RawBsonRef::Int64(i) => Some(i),
        RawBsonRef::Double(d) if d.is_finite() => Some(d as i64),
        _ => None,
    }
}

/// A boolean, or a number read as `!= 0`.
pub fn as_bool(v: RawBsonRef<'_>) -> Option<bool> {
    match v {
        RawBsonRef::Boolean(b) => Some(b),
        other => as_i64(other).map(|n| n != 0),
    }
}

/// [`as_i64`] for an owned value; this one also reads decimals (the
/// simulator coerces any numeric argument, as mongod does).
pub fn bson_as_i64(v: &Bson) -> Option<i64> {
    match v {
        Bson::Int32(i) => Some(*i as i64),
        Bson::Int64(i) => Some(*i),
        Bson::Double(d) if d.is_finite() => Some(*d as i64),
        Bson::Decimal128(d) => decimal_as_i64(*d),
        _ => None,
    }
}

fn decimal_as_i64(d: bson::Decimal128) -> Option<i64> {
    d.to_string()
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(|f| f as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_of_every_type() {
        assert_eq!(as_i64(RawBsonRef::Int32(-3)), Some(-3));
        assert_eq!(as_i64(RawBsonRef::Int64(1 << 40)), Some(1 << 40));
        assert_eq!(as_i64(RawBsonRef::Double(2.9)), Some(2));
        assert_eq!(as_i64(RawBsonRef::Double(f64::NAN)), None);
        assert_eq!(as_i64(RawBsonRef::String("1")), None);
        assert_eq!(as_bool(RawBsonRef::Int32(0)), Some(false));
        assert_eq!(as_bool(RawBsonRef::Double(1.0)), Some(true));
        assert_eq!(bson_as_i64(&Bson::Double(7.0)), Some(7));
        let d: bson::Decimal128 = "12".parse().unwrap();
        assert_eq!(bson_as_i64(&Bson::Decimal128(d)), Some(12));
        assert_eq!(as_i64(RawBsonRef::Decimal128(d)), None);
    }
}
