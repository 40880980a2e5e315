//! Stream descriptions: Markdown (pulldown-cmark) turned into HTML and cleaned
//! (ammonia) to a small, safe subset — paragraphs, line breaks, bold, italics,
//! lists and `http`/`https` links with `rel="nofollow noopener ugc"`. Nothing
//! else survives: no images, scripts, styles, event attributes or other
//! schemes. Raw HTML in the Markdown is shown as text, and every line break
//! the streamer typed is kept.

use std::collections::{HashMap, HashSet};

use pulldown_cmark::{html, Event, Options, Parser};

/// Tags a description may keep.
const TAGS: &[&str] = &["a", "br", "em", "li", "ol", "p", "strong", "ul"];

/// The description `markdown` as clean HTML, safe to insert in a page as is.
pub fn description_html(markdown: &str) -> String {
    if markdown.trim().is_empty() {
        return String::new();
    }
    let events = Parser::new_ext(markdown, Options::empty()).map(|e| match e {
        // A newline in the text is a line break, as the streamer sees it.
        Event::SoftBreak => Event::HardBreak,
        // HTML written in the description is shown, not interpreted.
        Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
        other => other,
    });
    let mut raw = String::with_capacity(markdown.len() * 2);
    html::push_html(&mut raw, events);
    cleaner().clean(&raw).to_string()
}

fn cleaner() -> ammonia::Builder<'static> {
    let mut b = ammonia::Builder::empty();
    b.tags(TAGS.iter().copied().collect::<HashSet<_>>())
        .tag_attributes(HashMap::from([("a", HashSet::from(["href"]))]))
        .generic_attributes(HashSet::new())
        .url_schemes(HashSet::from(["http", "https"]))
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(Some("nofollow noopener ugc"))
        .clean_content_tags(HashSet::from(["script", "style"]))
        .strip_comments(true);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Markup that must never come out as live HTML.
    const PAYLOADS: &[&str] = &[
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "<svg onload=alert(1)>",
        "<iframe src=\"javascript:alert(1)\"></iframe>",
        "<a href=\"javascript:alert(1)\">x</a>",
        "[click](javascript:alert(1))",
        "[click](JaVaScRiPt:alert(1))",
        "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "[click](vbscript:msgbox(1))",
        "[x](//evil.example/x)",
        "[x](/relative)",
        "![img](https://evil.example/x.png)",
        "![img](x \"onerror=alert(1)\")",
        "<p style=\"color:red\" onclick=\"alert(1)\">hi</p>",
        "<style>body{display:none}</style>",
        "[x](https://ok.example/\" onmouseover=\"alert(1))",
        "<details open ontoggle=alert(1)>",
        "<<script>script>alert(1)<</script>/script>",
        "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
        "`<script>alert(1)</script>`",
        "    <script>alert(1)</script>",
        "<!-- --><script>alert(1)</script>",
        "[a](https://ok.example/)<img src=x onerror=alert(1)>",
    ];

    fn assert_safe(html: &str, input: &str) {
        let lower = html.to_ascii_lowercase();
        for bad in [
            "<script",
            "<img",
            "<svg",
            "<iframe",
            "<style",
            "<details",
            "<math",
            "onerror",
            "onload",
            "onclick",
            "onmouseover",
            "ontoggle",
            "javascript:",
            "vbscript:",
            "data:",
            "style=",
            "src=",
        ] {
            // Text is escaped, so a dangerous word may appear only as `&lt;...`.
            let mut rest = lower.as_str();
            while let Some(i) = rest.find(bad) {
                let inside_tag = {
                    let before = &rest[..i];
                    before.rfind('<') > before.rfind('>')
                };
                assert!(
                    !(bad.starts_with('<') || inside_tag),
                    "{bad:?} alive in {html:?} (from {input:?})"
                );
                rest = &rest[i + bad.len()..];
            }
        }
        // Every tag is one of ours, and every link is http(s) and nofollow.
        let mut rest = html;
        while let Some(i) = rest.find('<') {
            let tag = &rest[i + 1..];
            let end = tag.find('>').expect("closed tag");
            let body = &tag[..end];
            let name = body
                .trim_start_matches('/')
                .split([' ', '/'])
                .next()
                .unwrap();
            assert!(TAGS.contains(&name), "tag {name:?} in {html:?}");
            if name == "a" && !body.starts_with('/') {
                assert!(body.ends_with("rel=\"nofollow noopener ugc\""), "{body:?}");
            }
            if name == "a" && body.contains("href") {
                assert!(
                    body.starts_with("a href=\"http://") || body.starts_with("a href=\"https://"),
                    "{body:?}"
                );
            }
            rest = &tag[end..];
        }
    }

    #[test]
    fn payloads_come_out_dead() {
        for p in PAYLOADS {
            let html = description_html(p);
            assert_safe(&html, p);
        }
    }

    #[test]
    fn the_subset_survives() {
        assert_eq!(
            description_html("Hi **bold** and *it*\nnext line"),
            "<p>Hi <strong>bold</strong> and <em>it</em><br>\nnext line</p>\n"
        );
        assert_eq!(
            description_html("[schedule](https://example.com/s?a=1&b=2)"),
            "<p><a href=\"https://example.com/s?a=1&amp;b=2\" rel=\"nofollow noopener ugc\">schedule</a></p>\n"
        );
        assert_eq!(
            description_html("- one\n- two\n\n1. first"),
            "<ul>\n<li>one</li>\n<li>two</li>\n</ul>\n<ol>\n<li>first</li>\n</ol>\n"
        );
        // Raw HTML is shown as text; a stripped link keeps its words.
        assert_eq!(
            description_html("a <b>b</b>"),
            "<p>a &lt;b&gt;b&lt;/b&gt;</p>\n"
        );
        assert_eq!(
            description_html("[click](javascript:alert(1))"),
            "<p><a rel=\"nofollow noopener ugc\">click</a></p>\n"
        );
        assert_eq!(description_html("  \n"), "");
    }
}
