//! The two languages of the pages, English and Japanese: choosing one per
//! request (`?lang=`, then the `lang` cookie, then `Accept-Language`) and every
//! user-facing string of the templates ([`Strings`]) and of the page scripts
//! ([`JsStrings`], handed to them as a JSON data block).

use std::future::{ready, Ready};

use actix_web::{
    cookie::{Cookie, SameSite},
    dev::Payload,
    http::header,
    FromRequest, HttpRequest,
};
use serde::Serialize;

/// Name of the cookie that remembers a language picked with `?lang=`.
pub const LANG_COOKIE: &str = "lang";

/// A language of the UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English (the default).
    En,
    /// Japanese.
    Ja,
}

impl Lang {
    /// Parses a language tag (`ja`, `ja-JP`, `en-GB`...): only its primary subtag counts.
    pub fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "ja" => Some(Lang::Ja),
            _ => None,
        }
    }

    /// The best of our languages for an `Accept-Language` header (highest `q`
    /// first, then header order); English when none matches.
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut pieces = part.split(';');
            let tag = pieces.next().unwrap_or("");
            let q = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if q <= 0.0 {
                continue;
            }
            if let Some(lang) = Lang::from_tag(tag) {
                if best.is_none_or(|(bq, _)| q > bq) {
                    best = Some((q, lang));
                }
            }
        }
        best.map_or(Lang::En, |(_, l)| l)
    }

    /// The BCP 47 code (`en`, `ja`).
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ja => "ja",
        }
    }

    /// The other language (for the switch).
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Ja,
            Lang::Ja => Lang::En,
        }
    }

    /// The language's name in itself.
    pub fn name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Ja => "日本語",
        }
    }

    /// Strings of the templates.
    pub fn strings(self) -> &'static Strings {
        match self {
            Lang::En => &EN,
            Lang::Ja => &JA,
        }
    }

    /// Strings of the page scripts.
    pub fn js_strings(self) -> &'static JsStrings {
        match self {
            Lang::En => &JS_EN,
            Lang::Ja => &JS_JA,
        }
    }

    /// The scripts' strings as JSON that is safe inside a `<script>` data block
    /// (`<`, `>` and `&` escaped, so no `</script>` can appear).
    pub fn js_json(self) -> String {
        script_json(self.js_strings())
    }
}

/// JSON of `value`, safe to place inside `<script type="application/json">`.
pub fn script_json(value: &impl Serialize) -> String {
    serde_json::to_string(value)
        .expect("strings serialise")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// The request's language, and whether it was picked with `?lang=` just now
/// (then the response remembers it in a cookie).
#[derive(Debug, Clone, Copy)]
pub struct PageLang {
    /// The language to render.
    pub lang: Lang,
    /// Chosen by `?lang=` on this request.
    pub from_query: bool,
}

impl PageLang {
    /// Picks the language of a request.
    pub fn of(req: &HttpRequest) -> PageLang {
        let query = req
            .query_string()
            .split('&')
            .find_map(|kv| kv.strip_prefix("lang="))
            .and_then(Lang::from_tag);
        if let Some(lang) = query {
            return PageLang {
                lang,
                from_query: true,
            };
        }
        let cookie = req
            .cookie(LANG_COOKIE)
            .and_then(|c| Lang::from_tag(c.value()));
        let lang = cookie.unwrap_or_else(|| {
            req.headers()
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .map_or(Lang::En, Lang::from_accept_language)
        });
        PageLang {
            lang,
            from_query: false,
        }
    }

    /// The cookie remembering a language picked with `?lang=`, if one was.
    pub fn cookie(&self) -> Option<Cookie<'static>> {
        self.from_query.then(|| {
            Cookie::build(LANG_COOKIE, self.lang.code())
                .path("/")
                .same_site(SameSite::Lax)
                .max_age(time::Duration::days(365))
                .finish()
        })
    }
}

impl FromRequest for PageLang {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(PageLang::of(req)))
    }
}

/// Declares a struct of `&'static str` fields and its English and Japanese values.
macro_rules! strings {
    ($(#[$meta:meta])* $name:ident, $en:ident, $ja:ident { $($field:ident: $e:expr, $j:expr;)* }) => {
        $(#[$meta])*
        #[derive(Debug, Serialize)]
        pub struct $name {
            $(
                #[allow(missing_docs)]
                pub $field: &'static str,
            )*
        }

        /// English.
        pub static $en: $name = $name { $($field: $e,)* };
        /// Japanese.
        pub static $ja: $name = $name { $($field: $j,)* };
    };
}

strings! {
    /// Every user-facing string of the templates.
    Strings, EN, JA {
        skip: "Skip to content", "本文へスキップ";
        nav_label: "Account", "アカウント";
        log_in: "Log in", "ログイン";
        log_out: "Log out", "ログアウト";
        sign_up: "Sign up", "新規登録";
        studio: "Studio", "スタジオ";
        language: "Language", "言語";
        streams: "Streams", "配信一覧";
        no_streams: "No streams yet.", "まだ配信はありません。";
        log_in_to_watch: "Log in to see this site's streams.", "配信を見るにはログインしてください。";
        status_live: "Live", "配信中";
        status_scheduled: "Scheduled", "配信予定";
        status_ended: "Ended", "終了";
        watching: " watching", "人が視聴中";
        streamer: "Streamer", "配信者";
        video: "Video", "映像";
        no_video: "No video for this stream yet.", "この配信にはまだ映像がありません。";
        chat: "Chat", "チャット";
        // Not "… messages": the box's label, "Message", must name one element.
        chat_messages: "Chat", "チャット";
        pinned: "Pinned", "ピン留め";
        unpin: "Unpin", "ピン留め解除";
        message: "Message", "メッセージ";
        send: "Send", "送信";
        reactions: "Reactions", "リアクション";
        log_in_to_chat: "Log in to chat and send stamps.", "チャットやスタンプを送るにはログインしてください。";
        chat_closed: "Chat is closed: the stream has ended.", "配信が終了したため、チャットは閉じられました。";
        connecting: "Connecting…", "接続中…";
        counter_label: "Characters used (at most 500)", "入力文字数（最大500）";
        enter_hint: "Enter sends, Shift+Enter adds a line.", "Enterで送信、Shift+Enterで改行。";
        delete: "Delete", "削除";
        pin: "Pin", "ピン留め";
        timeout: "Timeout", "タイムアウト";
        ban: "Ban", "BAN";
        moderation_tools: "Moderation", "モデレーション";
        hide: "Hide", "非表示";
        held_for_review: "Held for review", "確認待ち";
        held_empty: "No messages are waiting.", "確認待ちのメッセージはありません。";
        chat_modes: "Chat modes", "チャットモード";
        mode_stamps_only: "Stamps only", "スタンプのみ";
        mode_unique_chat: "Unique chat (no repeats within 30 s)", "重複禁止（30秒以内の同じ内容）";
        mode_hold_links: "Hold links for review", "リンクを確認待ちにする";
        mode_shield: "Raid shield", "荒らし対策シールド";
        mode_shield_hint: "Slow mode 10 s, accounts older than 10 minutes, links held. Off restores the settings from before.", "スローモード10秒、作成10分以上のアカウントのみ、リンクを保留。オフにすると元の設定に戻ります。";
        mode_established: "Accounts older than (minutes, 0 = off)", "アカウント作成からの経過時間（分、0でオフ）";
        term_hold: "Hold for review instead of refusing", "拒否せず確認待ちにする";
        username: "Username", "ユーザー名";
        password: "Password", "パスワード";
        no_account: "No account yet?", "アカウントをお持ちでない方は";
        have_account: "Already have an account?", "アカウントをお持ちの方は";
        signup_title: "Create an account", "アカウント作成";
        create_account: "Create account", "アカウントを作成";
        username_hint: "1–32 letters, digits, _, - or .", "半角英数字と _ - . で1〜32文字";
        password_hint: "At least 8 characters.", "8文字以上";
        err_wrong_credentials: "Wrong username or password.", "ユーザー名またはパスワードが違います。";
        err_rate_limited: "Too many attempts. Try again in a minute.", "試行回数が多すぎます。1分ほど待ってからお試しください。";
        err_form_expired: "The form expired. Please try again.", "フォームの有効期限が切れました。もう一度お試しください。";
        err_required: "Required.", "入力してください。";
        err_username_invalid: "Use 1–32 letters, digits, _, - or .", "半角英数字と _ - . の1〜32文字にしてください。";
        err_username_taken: "That username is taken.", "このユーザー名はすでに使われています。";
        err_password_short: "Use at least 8 characters.", "8文字以上にしてください。";
        err_password_long: "Use at most 1024 characters.", "1024文字以内にしてください。";
        signup_closed: "Sign-up is closed on this site.", "このサイトでは新規登録を受け付けていません。";
        not_found: "Not found", "見つかりません";
        not_found_text: "There is no such page or stream.", "ページまたは配信が見つかりません。";
        forbidden: "Not allowed", "アクセスできません";
        studio_forbidden: "The studio is for streamers and admins.", "スタジオは配信者と管理者専用です。";
        watch_banned: "You are banned from this stream.", "この配信からBANされました。";
        back_home: "Back to the streams", "配信一覧へ戻る";
        your_streams: "Your streams", "あなたの配信";
        all_streams: "All streams", "すべての配信";
        no_owned_streams: "No streams yet. Create one below.", "配信はまだありません。下のフォームから作成できます。";
        new_stream: "New stream", "新しい配信";
        title: "Title", "タイトル";
        title_hint: "Up to 200 characters.", "200文字まで";
        description: "Description", "説明";
        description_hint: "Markdown: **bold**, *italics*, links, lists. Preview below.", "Markdown が使えます（**太字**、*斜体*、リンク、箇条書き）。下にプレビューが出ます。";
        video_url: "Video URL", "動画URL";
        video_url_hint: "Optional: an http:// or https:// address.", "任意。http:// または https:// で始まるアドレス";
        create_stream: "Create stream", "配信を作成";
        created_notice: "Stream created.", "配信を作成しました。";
        go_live: "Go live", "配信開始";
        end_stream: "End stream", "配信終了";
        watch_page: "Watch page", "視聴ページ";
        analytics: "Analytics", "分析";
        manage: "Moderation and settings", "モデレーションと設定";
        moderators: "Moderators", "モデレーター";
        add: "Add", "追加";
        slow_mode: "Slow mode", "スローモード";
        slow_mode_seconds: "Seconds between messages (0 = off)", "メッセージの間隔（秒、0でオフ）";
        set: "Set", "設定";
        blocked_terms: "Blocked terms", "禁止ワード";
        term: "Term", "ワード";
        moderation_log: "Moderation log", "モデレーション履歴";
        refresh: "Refresh", "更新";
        when: "When", "日時";
        action: "Action", "操作";
        moderator: "Moderator", "モデレーター";
        target: "Target", "対象";
        reason: "Reason", "理由";
        reactions_of: "Reactions", "リアクション";
        reactions_total: " reactions", "件のリアクション";
        buckets_of: "buckets of", "集計単位";
        download_csv: "Download CSV", "CSVをダウンロード";
        chart_caption: "Reactions per stamp over time (UTC).", "スタンプごとのリアクション数の推移（UTC）。";
        totals_caption: "Totals per stamp", "スタンプ別の合計";
        stamp: "Stamp", "スタンプ";
        reaction_count: "Reactions", "リアクション数";
        top_moments: "Top moments", "盛り上がった瞬間";
        no_reactions: "No reactions yet.", "まだリアクションはありません。";
        ig_title: "Integrations", "連携";
        ig_webhooks: "Webhooks", "Webhook";
        ig_webhooks_hint: "Events are posted to each endpoint, signed with its secret (see the README for integrators).", "イベントは各エンドポイントに、そのシークレットで署名して送信されます（詳しくは README の連携者向けの節を参照）。";
        ig_url: "Endpoint URL", "エンドポイントURL";
        ig_events: "Events (comma-separated; empty for all)", "イベント（カンマ区切り、空欄ですべて）";
        ig_all_events: "all", "すべて";
        ig_state: "State", "状態";
        ig_last_success: "Last success", "最終成功";
        ig_last_failure: "Last failure", "最終失敗";
        ig_pending: "Waiting", "送信待ち";
        ig_add_webhook: "Add webhook", "Webhookを追加";
        ig_test: "Send test", "テスト送信";
        ig_remove: "Remove", "削除";
        ig_deliveries: "Recent deliveries", "最近の送信";
        ig_event: "Event", "イベント";
        ig_attempt: "Attempt", "試行";
        ig_answer: "Answer", "応答";
        ig_latency: "Latency (ms)", "所要時間（ミリ秒）";
        ig_no_webhooks: "No webhooks yet.", "Webhookはまだありません。";
        ig_no_deliveries: "No deliveries yet.", "送信はまだありません。";
        ig_tokens: "API tokens", "APIトークン";
        ig_tokens_hint: "A token acts as its user on the JSON API (Authorization: Bearer). It is shown once.", "トークンはJSON APIでそのユーザーとして動作します（Authorization: Bearer）。表示は一度だけです。";
        ig_user: "User", "ユーザー";
        ig_scopes: "Scopes", "スコープ";
        ig_label: "Label", "ラベル";
        ig_created: "Created", "作成";
        ig_last_used: "Last used", "最終使用";
        ig_create_token: "Create token", "トークンを作成";
        ig_revoke: "Revoke", "無効化";
        ig_no_tokens: "No tokens yet.", "トークンはまだありません。";
        ig_never: "never", "なし";
    }
}

strings! {
    /// Every user-facing string of the page scripts (`static/*.js`).
    JsStrings, JS_EN, JS_JA {
        connecting: "Connecting…", "接続中…";
        connected: "Live", "接続中（ライブ）";
        reconnecting: "Reconnecting…", "再接続中…";
        stopped: "Disconnected", "切断されました";
        sending: "Sending…", "送信中…";
        queued: "Will send when reconnected", "再接続後に送信します";
        banned_closed: "You are banned from this stream.", "この配信からBANされました。";
        session_ended: "Your session ended. Log in again to chat.", "セッションが終了しました。チャットするには再度ログインしてください。";
        watching_ended: "This site now shows its streams to logged-in viewers only. Log in to keep watching.", "このサイトの配信はログインした視聴者のみに公開されるようになりました。視聴を続けるにはログインしてください。";
        chat_closed: "Chat is closed: the stream has ended.", "配信が終了したため、チャットは閉じられました。";
        cannot_chat: "You can't chat right now.", "現在チャットできません。";
        timed_out_until: "You are timed out until {time}.", "{time}までタイムアウト中です。";
        banned: "You are banned from chatting here.", "この配信でのチャットを禁止されています。";
        log_in_to_chat: "Log in to chat and send stamps.", "チャットやスタンプを送るにはログインしてください。";
        older_skipped: "Some older messages are not shown.", "古いメッセージの一部は表示されていません。";
        not_connected: "Not connected yet; try again in a moment.", "まだ接続されていません。少し待ってからお試しください。";
        retrying: "Could not send yet; retrying…", "まだ送信できません。再試行しています…";
        slow_mode: "Slow mode: {n} s", "スローモード: {n}秒";
        too_long: "The message is longer than 500 characters.", "メッセージが500文字を超えています。";
        pinned_removed: "The pinned message was removed.", "ピン留めされたメッセージは削除されました。";
        delete: "Delete", "削除";
        pin: "Pin", "ピン留め";
        timeout: "Timeout", "タイムアウト";
        ban: "Ban", "BAN";
        unpin: "Unpin", "ピン留め解除";
        moderation_tools: "Moderation", "モデレーション";
        err_not_authenticated: "Log in first.", "先にログインしてください。";
        err_empty: "The message is empty.", "メッセージが空です。";
        err_too_long: "The message is longer than 500 characters.", "メッセージが500文字を超えています。";
        err_rate_limited: "You are sending too fast. Wait a moment.", "送信が速すぎます。少し待ってください。";
        err_slow_mode: "Slow mode is on. Wait a little before your next message.", "スローモード中です。次のメッセージまで少し待ってください。";
        err_banned: "You are banned from chatting here.", "この配信でのチャットを禁止されています。";
        err_timed_out: "You are timed out for now.", "現在タイムアウト中です。";
        err_blocked_term: "The message contains a blocked term.", "メッセージに禁止ワードが含まれています。";
        err_forbidden: "You are not allowed to do that.", "この操作は許可されていません。";
        err_not_found: "Not found.", "見つかりません。";
        err_chat_closed: "Chat is closed: the stream has ended.", "配信が終了したため、チャットは閉じられました。";
        err_invalid: "That was not accepted.", "受け付けられませんでした。";
        err_csrf: "The page expired. Reload it and try again.", "ページの有効期限が切れました。再読み込みしてからお試しください。";
        err_unavailable: "The service is busy. Try again shortly.", "サービスが混み合っています。少し待ってからお試しください。";
        err_request: "Request failed ({status}).", "リクエストに失敗しました（{status}）。";
        saved: "Saved.", "保存しました。";
        loading: "Loading…", "読み込み中…";
        confirm_end: "Press again to end the stream", "もう一度押すと配信を終了します";
        no_moderators: "No moderators appointed.", "任命されたモデレーターはいません。";
        no_terms: "No blocked terms.", "禁止ワードはありません。";
        no_log: "Nothing logged yet.", "記録はまだありません。";
        remove: "Remove", "外す";
        status_live: "Live", "配信中";
        status_scheduled: "Scheduled", "配信予定";
        status_ended: "Ended", "終了";
        title_required: "Enter a title of at most 200 characters.", "200文字以内のタイトルを入力してください。";
        url_invalid: "Use an http:// or https:// address, or leave it empty.", "http:// または https:// のアドレスを入力するか、空欄にしてください。";
        slow_off: "Slow mode is off.", "スローモードはオフです。";
        reply: "Reply", "返信";
        edit: "Edit", "編集";
        edited: "(edited)", "（編集済み）";
        cancel: "Cancel", "キャンセル";
        replying_to: "Replying to @{user}: {text}", "@{user} に返信: {text}";
        editing: "Editing your message", "メッセージを編集中";
        err_edit_window: "Messages can be edited for 120 seconds after sending.", "メッセージは送信後120秒以内のみ編集できます。";
        search_chat: "Search chat", "チャットを検索";
        search: "Search", "検索";
        no_results: "No messages found.", "メッセージは見つかりませんでした。";
        deleted: "deleted", "削除済み";
        not_in_list: "older than the live list", "表示中の一覧より古いメッセージ";
        in_replay: "In the replay", "リプレイでの位置";
        not_in_replay: "Not in the replay (deleted or hidden).", "リプレイにはありません（削除または非表示）。";
        hide: "Hide", "非表示";
        unhide: "Unhide", "再表示";
        approve: "Approve", "承認";
        deny: "Deny", "却下";
        held: "Held for review", "確認待ち";
        held_denied: "Not approved", "承認されませんでした";
        hidden_mark: "hidden from others", "他の人には非表示";
        reason_term: "matches a hold term", "保留ワードに一致";
        reason_link: "contains a link", "リンクを含む";
        modes_saved: "Chat modes updated.", "チャットモードを更新しました。";
        term_hold: "held for review", "確認待ち";
        term_tenant: "whole site", "サイト全体";
        active_modes: "Chat modes: {list}", "チャットモード: {list}";
        mode_stamps_only: "stamps only", "スタンプのみ";
        mode_unique_chat: "unique chat", "重複禁止";
        mode_hold_links: "links held", "リンク保留";
        mode_shield: "raid shield", "荒らし対策シールド";
        mode_established: "accounts older than {n} min", "作成{n}分以上のアカウントのみ";
        wait_minutes: "{n} min", "{n}分";
        wait_seconds: "{n} s", "{n}秒";
        err_stamps_only: "Stamps only right now: chat messages are off, stamps still work.", "現在はスタンプのみです。チャットは送れませんが、スタンプは送れます。";
        err_too_new: "Your account is too new to chat here. Try again in {wait}.", "アカウント作成から間もないため、まだチャットできません。{wait}後にもう一度お試しください。";
        err_too_new_plain: "Your account is too new to chat here yet.", "アカウント作成から間もないため、まだチャットできません。";
        err_duplicate: "That message was just sent. Write something new.", "同じメッセージが直前に送信されています。別の内容を書いてください。";
        err_denied: "A moderator did not approve your message.", "メッセージはモデレーターに承認されませんでした。";
        ig_secret_once: "Webhook {id} added. Its signing secret, shown only now: {secret}", "Webhook {id} を追加しました。署名用シークレット（今だけ表示）: {secret}";
        ig_token_once: "Token {id} created. Copy it now, it is not shown again: {token}", "トークン {id} を作成しました。今コピーしてください。再表示されません: {token}";
        ig_test_ok: "Answered {status} in {ms} ms.", "{ms} ミリ秒で {status} の応答がありました。";
        ig_test_status: "Answered {status}: not a success.", "{status} の応答でした（成功ではありません）。";
        ig_test_failed: "No answer: {error}", "応答なし: {error}";
        ig_removed: "Removed.", "削除しました。";
        ig_revoked: "Revoked.", "無効化しました。";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_best_match() {
        assert_eq!(Lang::from_accept_language("ja"), Lang::Ja);
        assert_eq!(
            Lang::from_accept_language("ja-JP,ja;q=0.9,en;q=0.8"),
            Lang::Ja
        );
        assert_eq!(
            Lang::from_accept_language("en-US,en;q=0.9,ja;q=0.8"),
            Lang::En
        );
        assert_eq!(Lang::from_accept_language("fr-FR,ja;q=0.5"), Lang::Ja);
        assert_eq!(Lang::from_accept_language("fr, de"), Lang::En);
        assert_eq!(Lang::from_accept_language("ja;q=0, en;q=0.1"), Lang::En);
        assert_eq!(Lang::from_accept_language(""), Lang::En);
    }

    #[test]
    fn script_json_cannot_close_the_script() {
        let s = script_json(&serde_json::json!({"x": "</script><b>&"}));
        assert!(
            !s.contains('<') && !s.contains('>') && !s.contains('&'),
            "{s}"
        );
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back["x"], "</script><b>&");
    }

    #[test]
    fn every_string_is_translated() {
        let en = serde_json::to_value(&EN).unwrap();
        let ja = serde_json::to_value(&JA).unwrap();
        for (k, v) in en.as_object().unwrap() {
            assert!(!v.as_str().unwrap().trim().is_empty(), "{k}");
            assert_ne!(ja[k], *v, "{k} is not translated");
        }
        let en = serde_json::to_value(&JS_EN).unwrap();
        let ja = serde_json::to_value(&JS_JA).unwrap();
        for k in en.as_object().unwrap().keys() {
            assert!(!ja[k].as_str().unwrap().is_empty(), "{k}");
        }
        // The names browser tests and assistive technology rely on.
        assert_eq!(
            (EN.send, EN.message, EN.log_in, EN.username, EN.password),
            ("Send", "Message", "Log in", "Username", "Password")
        );
        assert_eq!(
            (JS_EN.delete, JS_EN.pin, JS_EN.timeout, JS_EN.ban),
            ("Delete", "Pin", "Timeout", "Ban")
        );
        assert_eq!(
            (JS_EN.hide, JS_EN.approve, JS_EN.deny, EN.hide),
            ("Hide", "Approve", "Deny", "Hide")
        );
    }
}
