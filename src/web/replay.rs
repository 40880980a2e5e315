//! What the watch page needs for video and replay (`static/replay.js`): whether
//! a video is HLS (played by the browser, or by the vendored hls.js where the
//! browser cannot), the page's policy letting hls.js fetch the video's
//! segments, and the replay's strings in English and Japanese.

use serde::Serialize;

use crate::web::i18n::{script_json, Lang};

/// True when `url` names an HLS playlist (`.m3u8` path).
pub fn is_hls(url: &str) -> bool {
    let path = url.split(['?', '#']).next().unwrap_or("");
    path.to_ascii_lowercase().ends_with(".m3u8")
}

/// `scheme://host[:port]` of an absolute http(s) URL, when it is plain enough
/// to be written in a policy.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next()?;
    let plain = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    plain.then(|| format!("{scheme}://{}", host.to_ascii_lowercase()))
}

/// The watch page's policy: the pages' own (`base`), plus, for an HLS video,
/// fetches to the video's origin (hls.js downloads its playlists and segments).
pub fn watch_policy(base: &str, video_url: Option<&str>) -> String {
    match video_url.filter(|u| is_hls(u)).and_then(origin) {
        Some(o) => format!("{base}; connect-src 'self' {o}"),
        None => base.to_string(),
    }
}

/// The replay's strings (for `replay.js`).
#[derive(Serialize)]
pub struct ReplayStrings {
    replay: &'static str,
    loading: &'static str,
    load_failed: &'static str,
    strip_label: &'static str,
    strip_value: &'static str,
    peaks_label: &'static str,
    peak: &'static str,
    no_reactions: &'static str,
    chat_replay: &'static str,
    video_failed: &'static str,
}

/// The replay strings of a language.
pub fn strings(lang: Lang) -> ReplayStrings {
    match lang {
        Lang::En => ReplayStrings {
            replay: "Replay",
            loading: "Loading the replay…",
            load_failed: "The replay could not be loaded.",
            strip_label: "Reactions over time: choose a moment to jump there",
            strip_value: "{time} of {total}",
            peaks_label: "Top moments",
            peak: "{time} · {n} reactions",
            no_reactions: "No reactions in this stream.",
            chat_replay: "Chat replays with the video.",
            video_failed: "The video could not be played.",
        },
        Lang::Ja => ReplayStrings {
            replay: "リプレイ",
            loading: "リプレイを読み込み中…",
            load_failed: "リプレイを読み込めませんでした。",
            strip_label: "リアクションの推移：選ぶとその場面へ移動します",
            strip_value: "{time} / {total}",
            peaks_label: "盛り上がった場面",
            peak: "{time} · リアクション {n} 件",
            no_reactions: "この配信にリアクションはありません。",
            chat_replay: "チャットは動画に合わせて再生されます。",
            video_failed: "動画を再生できませんでした。",
        },
    }
}

/// The replay strings as a JSON data block.
pub fn strings_json(lang: Lang) -> String {
    script_json(&strings(lang))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hls_and_policy() {
        assert!(is_hls("https://cdn.example.com/live/index.M3U8?token=1"));
        assert!(!is_hls("https://cdn.example.com/v.mp4?x=.m3u8"));
        let base = "default-src 'self'";
        assert_eq!(
            watch_policy(base, Some("https://CDN.example.com:8443/a/b.m3u8")),
            "default-src 'self'; connect-src 'self' https://cdn.example.com:8443"
        );
        assert_eq!(
            watch_policy(base, Some("https://cdn.example.com/v.mp4")),
            base
        );
        assert_eq!(watch_policy(base, Some("https://a.com;b/x.m3u8")), base);
        assert_eq!(watch_policy(base, None), base);
    }
}
