//! `procward mib`: the SMIv2 module of every notification, generated from
//! the catalog and the configured root OID through `templates/mib.hbs`.

/// The IETF modules PROCWARD-MIB imports, which Debian's main archive
/// lacks (see contrib/mibs/README.md): (file name, text).
pub const BASE_MODULES: &[(&str, &str)] = &[
    ("SNMPv2-SMI", include_str!("../../contrib/mibs/SNMPv2-SMI")),
    ("SNMPv2-TC", include_str!("../../contrib/mibs/SNMPv2-TC")),
    (
        "SNMPv2-CONF",
        include_str!("../../contrib/mibs/SNMPv2-CONF"),
    ),
    ("SNMPv2-MIB", include_str!("../../contrib/mibs/SNMPv2-MIB")),
];

use crate::catalog::render::Renderer;
use serde_json::json;

/// The module text for `root` (which lies under enterprises).
pub fn generate(r: &Renderer, root: &[u32]) -> Result<String, String> {
    if root.len() < 7 || root[..6] != [1, 3, 6, 1, 4, 1] {
        return Err("the root OID must lie under enterprises (1.3.6.1.4.1)".into());
    }
    let parent = std::iter::once("enterprises".to_string())
        .chain(root[6..].iter().map(u32::to_string))
        .collect::<Vec<_>>()
        .join(" ");
    // MIB strings cannot hold a double quote.
    let clean = |s: &str| s.replace('"', "'");
    let notifications: Vec<_> = r
        .catalog
        .messages
        .iter()
        .map(|m| {
            json!({
                "name": m.snmp,
                "id": m.id,
                "number": m.id.trim_start_matches("PW"),
                "severity": m.severity.as_str(),
                "description": clean(&m.description.en),
                "action": clean(&m.action.en),
                "exit": m.fields.contains_key("exit"),
            })
        })
        .collect();
    let data = json!({
        "parent": parent,
        "updated": "202611250000Z",
        "version": env!("CARGO_PKG_VERSION"),
        "notifications": notifications,
    });
    r.render_data("mib", &data)
}
