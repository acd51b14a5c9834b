//! The live status page, served at `/` and `/ui` on the local HTTP listener (`[metrics] listen`)
//! beside `/metrics` and the registry API. It is one self-contained HTML file (inline CSS and
//! script, no external assets, so it works offline) whose script polls the same JSON routes
//! the CLI's data comes from (`/v1/status`, `/v1/catalog/…`) and draws the network. Strings
//! from the API are remote input: the script only ever puts them into the DOM as text nodes or
//! attribute values, and the Content-Security-Policy allows nothing but this origin and the
//! page's own inline code.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// The page: HTML with its CSS and script inline.
pub const PAGE: &str = include_str!("index.html");

/// Only this origin and the page's own inline script and style.
pub const CSP: &str =
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'";

/// The page's routes, to merge into the listener's router.
pub fn router() -> Router {
    Router::new().route("/", get(page)).route("/ui", get(page))
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `http://` or `https://` in the page, with what follows it up to a quote or space.
    fn urls(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        for scheme in ["http://", "https://"] {
            let mut rest = text;
            while let Some(i) = rest.find(scheme) {
                let tail = &rest[i..];
                let end = tail.find(['"', '\'', ' ', '<', '>', ')', '`']).unwrap_or(tail.len());
                out.push(&tail[..end]);
                rest = &tail[scheme.len()..];
            }
        }
        out
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        // The SVG namespace is an identifier, never fetched; anything else would be a request.
        let external: Vec<&str> =
            urls(PAGE).into_iter().filter(|u| *u != "http://www.w3.org/2000/svg").collect();
        assert!(external.is_empty(), "the status page must work offline, but names {external:?}");
        for tag in ["<link", "<img", "<iframe", "@import", "url("] {
            assert!(!PAGE.contains(tag), "the status page must not load assets ({tag})");
        }
        assert!(!PAGE.contains("<script src"), "no external script");
    }

    #[test]
    fn the_page_has_the_elements_tests_and_tools_rely_on() {
        for needle in [
            r#"<svg id="topology""#,
            r#"id="members""#,
            r#"id="services""#,
            r#"id="drops""#,
            r#"id="stale""#,
            "data-name",
            "data-service",
            "'/v1/status'",
            "'/v1/catalog/nodes'",
            "'/v1/catalog/services'",
            "'/v1/catalog/service/'",
            "rtt_ms",
        ] {
            assert!(PAGE.contains(needle), "the page lacks {needle}");
        }
    }

    #[test]
    fn api_strings_never_reach_inner_html() {
        // Member names, labels and tags are remote input: text nodes and attributes only.
        for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("] {
            assert!(!PAGE.contains(sink), "the page uses {sink}");
        }
    }

    #[tokio::test]
    async fn served_as_html_with_a_strict_policy() {
        let resp = page().await.into_response();
        let h = resp.headers();
        assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP);
        assert!(!CSP.contains('*') && !CSP.contains("http"), "{CSP}");
    }
}
