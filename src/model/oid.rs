//! SNMP numbering: procward's enterprise number and the OIDs derived from
//! a root (`daemon.snmp-root`).

/// procward's private enterprise number (1.3.6.1.4.1.32473: the number
/// IANA reserves for documentation; operators set their own root with
/// `daemon.snmp-root`).
pub const ENTERPRISE: u32 = 32473;

/// The default root of procward's OIDs (`daemon.snmp-root`):
/// enterprises.ENTERPRISE.
pub const DEFAULT_ROOT: [u32; 7] = [1, 3, 6, 1, 4, 1, ENTERPRISE];

/// The RFC 5424 SD-ID of procward's structured data under `root`:
/// `procward@PEN` with the enterprise's number (and any sub-identifiers
/// of the root after it), so that it follows `daemon.snmp-root`.
pub fn sd_id(root: &[u32]) -> String {
    let root = if root.len() >= 7 { root } else { &DEFAULT_ROOT };
    let pen: Vec<String> = root[6..].iter().map(u32::to_string).collect();
    format!("procward@{}", pen.join("."))
}

/// The notification OID of a message: ROOT.0.N for PWN.
pub fn notification_oid(root: &[u32], id: &str) -> Vec<u32> {
    let n: u32 = id.trim_start_matches("PW").parse().unwrap_or(0);
    let mut v = root.to_vec();
    v.extend([0, n]);
    v
}
