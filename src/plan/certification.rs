//! `certification:` in a plan: who certifies what, for `gpuconform certify`'s `PRODUCT.yaml`
//! and the AI-conformance checklist's `metadata`. The names are the checklist's own
//! (`cncf/k8s-ai-conformance`), so a reviewer sees the same fields in both files.
//!
//! ```yaml
//! certification:
//!   vendorName: Example Cloud
//!   platformName: Example GPU Kubernetes
//!   platformVersion: "2026.12"
//!   contactEmailAddress: gpu-team@example.com
//!   websiteUrl: https://example.com/gpu   # optional, like repoUrl, documentationUrl, description
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::input::{InputError, Spanned};

/// As written.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawCertification {
    vendor_name: Spanned<String>,
    platform_name: Spanned<String>,
    platform_version: Spanned<String>,
    contact_email_address: Spanned<String>,
    #[serde(default)]
    website_url: Option<Spanned<String>>,
    #[serde(default)]
    repo_url: Option<Spanned<String>>,
    #[serde(default)]
    documentation_url: Option<Spanned<String>>,
    #[serde(default)]
    description: Option<String>,
}

/// The validated section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Certification {
    /// The vendor.
    pub vendor_name: String,
    /// The platform (product) certified.
    pub platform_name: String,
    /// Its version.
    pub platform_version: String,
    /// Whom a reviewer writes to.
    pub contact_email_address: String,
    /// Optional links, `https://`.
    pub website_url: Option<String>,
    /// The platform's repository.
    pub repo_url: Option<String>,
    /// Its documentation.
    pub documentation_url: Option<String>,
    /// Free text.
    pub description: Option<String>,
}

fn text(file: &Path, v: &Spanned<String>, field: &str) -> Result<String, InputError> {
    let t = v.value.trim();
    // The upstream template's placeholders (`[Vendor Name]`) are not values.
    if t.is_empty() || (t.starts_with('[') && t.ends_with(']')) {
        return Err(InputError::at(
            file,
            v,
            field,
            "must be filled in (the checklist's placeholder is not a value)",
        ));
    }
    Ok(t.to_string())
}

fn url(
    file: &Path,
    v: &Option<Spanned<String>>,
    field: &str,
) -> Result<Option<String>, InputError> {
    let Some(v) = v else { return Ok(None) };
    let t = text(file, v, field)?;
    if !t.starts_with("https://") || t.contains(char::is_whitespace) {
        return Err(InputError::at(
            file,
            v,
            field,
            format!("`{t}` is not an https:// URL"),
        ));
    }
    Ok(Some(t))
}

/// Validates the section.
pub(super) fn validate(file: &Path, raw: &RawCertification) -> Result<Certification, InputError> {
    let f = "certification.";
    let contact = text(
        file,
        &raw.contact_email_address,
        "certification.contactEmailAddress",
    )?;
    let looks_like_mail = contact
        .split_once('@')
        .is_some_and(|(user, host)| !user.is_empty() && host.contains('.') && !host.ends_with('.'));
    if !looks_like_mail || contact.contains(char::is_whitespace) {
        return Err(InputError::at(
            file,
            &raw.contact_email_address,
            "certification.contactEmailAddress",
            format!("`{contact}` is not an email address"),
        ));
    }
    Ok(Certification {
        vendor_name: text(file, &raw.vendor_name, &format!("{f}vendorName"))?,
        platform_name: text(file, &raw.platform_name, &format!("{f}platformName"))?,
        platform_version: text(file, &raw.platform_version, &format!("{f}platformVersion"))?,
        contact_email_address: contact,
        website_url: url(file, &raw.website_url, &format!("{f}websiteUrl"))?,
        repo_url: url(file, &raw.repo_url, &format!("{f}repoUrl"))?,
        documentation_url: url(
            file,
            &raw.documentation_url,
            &format!("{f}documentationUrl"),
        )?,
        description: raw.description.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<Certification, InputError> {
        let raw: RawCertification = crate::input::parse_yaml(Path::new("p.yaml"), yaml)?;
        validate(Path::new("p.yaml"), &raw)
    }

    const GOOD: &str = "vendorName: Example\nplatformName: GPU K8s\nplatformVersion: \"1.0\"\ncontactEmailAddress: a@example.com\n";

    #[test]
    fn a_filled_section_validates_and_each_bad_field_is_named_with_its_line() {
        let c = load(&format!("{GOOD}websiteUrl: https://example.com\n")).expect("valid");
        assert_eq!(c.platform_version, "1.0");
        assert_eq!(c.website_url.as_deref(), Some("https://example.com"));
        for (yaml, field, what, line) in [
            (
                GOOD.replace("Example\n", "\"[Vendor Name]\"\n"),
                "certification.vendorName",
                "must be filled in",
                1,
            ),
            (
                GOOD.replace("a@example.com", "nobody"),
                "certification.contactEmailAddress",
                "not an email address",
                4,
            ),
            (
                format!("{GOOD}repoUrl: http://example.com\n"),
                "certification.repoUrl",
                "not an https:// URL",
                5,
            ),
        ] {
            let e = load(&yaml).expect_err("an error");
            let text = e.to_string();
            assert!(text.contains(field) && text.contains(what), "{text}");
            assert_eq!(e.line, Some(line), "{text}");
        }
        let e = load("vendorName: x\n").expect_err("missing fields");
        assert!(e.to_string().contains("platformName"), "{e}");
    }
}
