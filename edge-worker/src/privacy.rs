//! IP privacy at the edge: keep the address, truncate it (IPv4 to /24, IPv6 to /48), or drop it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What the edge does with the visitor's IP address before it leaves Cloudflare (`IP_PRIVACY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpPrivacy {
    /// Zero the last IPv4 octet / keep the first 48 bits of IPv6 (the default).
    #[default]
    Truncate,
    /// Keep the full address.
    Full,
    /// Send no address at all.
    Drop,
}

impl IpPrivacy {
    /// Parses `truncate`, `full` or `drop` (case-insensitive).
    pub fn parse(s: &str) -> Option<IpPrivacy> {
        match s.trim().to_ascii_lowercase().as_str() {
            "truncate" => Some(IpPrivacy::Truncate),
            "full" => Some(IpPrivacy::Full),
            "drop" => Some(IpPrivacy::Drop),
            _ => None,
        }
    }

    /// The address to record for `ip` under this setting; `None` to record none (also for text that
    /// is not an IP address).
    pub fn apply(self, ip: &str) -> Option<String> {
        let addr: IpAddr = ip.trim().parse().ok()?;
        match self {
            IpPrivacy::Drop => None,
            IpPrivacy::Full => Some(addr.to_string()),
            IpPrivacy::Truncate => Some(truncate(addr).to_string()),
        }
    }
}

/// IPv4 with the last octet zeroed; IPv6 kept to its /48 prefix (an IPv4-mapped IPv6 address is
/// truncated as IPv4).
pub fn truncate(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => truncate(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_loses_its_last_octet() {
        assert_eq!(
            IpPrivacy::Truncate.apply("203.0.113.77").as_deref(),
            Some("203.0.113.0")
        );
    }

    #[test]
    fn ipv6_is_kept_to_a_48_bit_prefix() {
        assert_eq!(
            IpPrivacy::Truncate
                .apply("2001:db8:85a3:1234:5678:8a2e:370:7334")
                .as_deref(),
            Some("2001:db8:85a3::")
        );
        assert_eq!(
            IpPrivacy::Truncate.apply("::ffff:198.51.100.9").as_deref(),
            Some("198.51.100.0")
        );
    }

    #[test]
    fn full_keeps_and_drop_removes_the_address() {
        assert_eq!(
            IpPrivacy::Full.apply("203.0.113.77").as_deref(),
            Some("203.0.113.77")
        );
        assert_eq!(IpPrivacy::Drop.apply("203.0.113.77"), None);
    }

    #[test]
    fn text_that_is_not_an_address_is_never_recorded() {
        assert_eq!(IpPrivacy::Full.apply("not-an-ip"), None);
        assert_eq!(IpPrivacy::Truncate.apply(""), None);
    }

    #[test]
    fn settings_parse_case_insensitively_and_reject_typos() {
        assert_eq!(IpPrivacy::parse("Truncate"), Some(IpPrivacy::Truncate));
        assert_eq!(IpPrivacy::parse("full"), Some(IpPrivacy::Full));
        assert_eq!(IpPrivacy::parse(" drop "), Some(IpPrivacy::Drop));
        assert_eq!(IpPrivacy::parse("anonymize"), None);
    }
}
