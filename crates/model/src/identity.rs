//! The multi-cloud identity of an agent and of every series it produces (`ns`, `service_type`,
//! `service_id`, `vm_id`, `csp`, `region`), and the rules its values follow. The agent checks
//! its configuration with these and the server's registry checks every heartbeat with them, so
//! both say the same thing about the same bad value: the field, and for a closed set the
//! allowed values (`service_type: "mcis" is not allowed; expected one of vm, k8s`).

/// Values of `service_type`.
pub const SERVICE_TYPES: &[&str] = &["vm", "k8s"];
/// Values of `csp`.
pub const CSPS: &[&str] =
    &["aws", "azure", "gcp", "alibaba", "ncp", "ktcloud", "openstack", "onprem"];
/// Longest key part and region, in characters.
pub const MAX_PART: usize = 128;

/// An agent's key: `{ns}/{service_type}/{service_id}/{vm_id}/{csp}`.
pub fn key(ns: &str, service_type: &str, service_id: &str, vm_id: &str, csp: &str) -> String {
    format!("{ns}/{service_type}/{service_id}/{vm_id}/{csp}")
}

/// Whether `c` may appear in a key part.
pub fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Checks one key part (`ns`, `service_id`, `vm_id`): 1 to [`MAX_PART`] characters of
/// `[A-Za-z0-9_.-]`.
pub fn check_part(field: &str, v: &str) -> Result<(), String> {
    let n = v.chars().count();
    if n == 0 {
        return Err(format!(
            "{field}: empty; expected 1 to {MAX_PART} characters of [A-Za-z0-9_.-]"
        ));
    }
    if n > MAX_PART {
        return Err(format!("{field}: {n} characters long; at most {MAX_PART} allowed"));
    }
    if let Some((i, c)) = v.chars().enumerate().find(|(_, c)| !is_key_char(*c)) {
        return Err(format!(
            "{field}: {v:?} has {c:?} at position {}; only [A-Za-z0-9_.-] is allowed",
            i + 1
        ));
    }
    Ok(())
}

/// Checks a value of a closed set (`service_type`, `csp`).
pub fn check_one_of(field: &str, v: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(format!("{field}: {v:?} is not allowed; expected one of {}", allowed.join(", ")))
    }
}

/// Checks free text (`region`, an agent's version): 1 to `max` characters, no control
/// characters.
pub fn check_text(field: &str, v: &str, max: usize) -> Result<(), String> {
    let n = v.chars().count();
    if n == 0 || n > max {
        return Err(format!("{field}: {n} characters long; expected 1 to {max} characters"));
    }
    if v.chars().any(char::is_control) {
        return Err(format!("{field}: {v:?} holds a control character"));
    }
    Ok(())
}

/// Checks a whole identity; the first bad field is the error.
pub fn check(
    ns: &str,
    service_type: &str,
    service_id: &str,
    vm_id: &str,
    csp: &str,
    region: &str,
) -> Result<(), String> {
    check_part("ns", ns)?;
    check_one_of("service_type", service_type, SERVICE_TYPES)?;
    check_part("service_id", service_id)?;
    check_part("vm_id", vm_id)?;
    check_one_of("csp", csp, CSPS)?;
    check_text("region", region, MAX_PART)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field_and_what_is_allowed() {
        let e = |r: Result<(), String>| r.unwrap_err();
        assert_eq!(
            e(check("default", "mcis", "m", "v", "aws", "r")),
            r#"service_type: "mcis" is not allowed; expected one of vm, k8s"#
        );
        assert!(
            e(check("default", "vm", "m", "v", "AWS", "r"))
                .starts_with(r#"csp: "AWS" is not allowed; expected one of aws, azure,"#)
        );
        assert_eq!(
            e(check("a/b", "vm", "m", "v", "aws", "r")),
            r#"ns: "a/b" has '/' at position 2; only [A-Za-z0-9_.-] is allowed"#
        );
        assert_eq!(
            e(check("n", "vm", "", "v", "aws", "r")),
            "service_id: empty; expected 1 to 128 characters of [A-Za-z0-9_.-]"
        );
        assert_eq!(
            e(check("n", "vm", "m", "v", "aws", "")),
            "region: 0 characters long; expected 1 to 128 characters"
        );
        assert!(check("default", "k8s", "cluster-1", "node_1.a", "onprem", "Seoul 1").is_ok());
        assert_eq!(key("a", "vm", "b", "c", "gcp"), "a/vm/b/c/gcp");
    }
}
