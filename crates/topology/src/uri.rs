//! Connection-string options the `mongodb` crate (with rustls) does not
//! take, read and removed before it parses the string.

/// Removes `tlsAllowInvalidHostnames` (any case) from `uri`'s options;
/// returns the string without it and its value (`None`: absent). The
/// driver refuses the option when built with rustls; holdfast's own TLS
/// honours it.
pub fn take_allow_invalid_hostnames(uri: &str) -> (String, Option<bool>) {
    let Some((base, query)) = uri.split_once('?') else {
        return (uri.to_string(), None);
    };
    let mut value = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k.eq_ignore_ascii_case("tlsAllowInvalidHostnames") {
                value = Some(v.eq_ignore_ascii_case("true"));
                false
            } else {
                true
            }
        })
        .collect();
    if kept.is_empty() {
        return (base.to_string(), value);
    }
    (format!("{base}?{}", kept.join("&")), value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_is_taken_out_wherever_it_is() {
        assert_eq!(
            take_allow_invalid_hostnames("mongodb://h/?tls=true&tlsAllowInvalidHostnames=true&w=1"),
            ("mongodb://h/?tls=true&w=1".to_string(), Some(true))
        );
        assert_eq!(
            take_allow_invalid_hostnames("mongodb://h/?TLSALLOWINVALIDHOSTNAMES=false"),
            ("mongodb://h/".to_string(), Some(false))
        );
        assert_eq!(
            take_allow_invalid_hostnames("mongodb://h/?tls=true"),
            ("mongodb://h/?tls=true".to_string(), None)
        );
        assert_eq!(
            take_allow_invalid_hostnames("mongodb://h:1"),
            ("mongodb://h:1".to_string(), None)
        );
    }
}
