//! A loopback fake of the Telegram Bot API for integration tests and benchmarks. It answers
//! with the real API's shapes, statuses and error texts, so a client that works against it
//! handles the real service's failures too.
//!
//! Self-contained on purpose (std, tokio, axum, serde_json only; nothing from `super::` or
//! the crate under test): the benchmark includes this same file by `#[path]`.
//!
//! Flood limits: Telegram does not publish its limits exactly. The fake enforces the
//! approximations its documentation and FAQ give: about 30 messages per second per bot,
//! at most 20 messages per minute into one group, and about one message per second into one
//! chat (here a burst of 3, then one per second).
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

const TERMINATED: &str =
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running";
const WEBHOOK_ACTIVE: &str = "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first";
const MAX_DOWNLOAD: usize = 20 * 1024 * 1024;
/// Update kinds the real API leaves out unless asked for by name.
const OPT_IN_KINDS: [&str; 3] = ["chat_member", "message_reaction", "message_reaction_count"];
const HTML_TAGS: &str =
    "b strong i em u ins s strike del span tg-spoiler a code pre blockquote tg-emoji";
const CHAT_ACTIONS: &str =
    "typing upload_photo record_video upload_video record_voice upload_voice \
    upload_document choose_sticker find_location record_video_note upload_video_note";

fn listed(list: &str, word: &str) -> bool {
    list.split_whitespace().any(|w| w == word)
}

/// A message the bot sent; `text` as the bot gave it, markup included.
#[derive(Debug, Clone)]
pub struct Sent {
    pub chat_id: i64,
    pub message_id: i64,
    pub text: String,
    pub reply_to_message_id: Option<i64>,
    pub message_thread_id: Option<i64>,
    pub parse_mode: Option<String>,
    pub at: Instant,
}

#[derive(Debug, Clone)]
pub struct Action {
    pub chat_id: i64,
    pub action: String,
    pub message_thread_id: Option<i64>,
    pub at: Instant,
}

#[derive(Default)]
struct Flood {
    enabled: bool,
    bot: VecDeque<Instant>,
    group: HashMap<i64, VecDeque<Instant>>,
    /// Per chat: tokens left (at most 3, one back per second) and when they were counted.
    chat: HashMap<i64, (f64, Instant)>,
}

impl Flood {
    /// Counts a send into `chat` now, or says how many seconds to wait instead.
    fn admit(&mut self, chat: i64, now: Instant) -> Result<(), u64> {
        if !self.enabled {
            return Ok(());
        }
        let second = Duration::from_secs(1);
        let minute = Duration::from_secs(60);
        while self.bot.front().is_some_and(|t| now - *t >= second) {
            self.bot.pop_front();
        }
        if self.bot.len() >= 30 {
            return Err(1);
        }
        let group = self.group.entry(chat).or_default();
        while group.front().is_some_and(|t| now - *t >= minute) {
            group.pop_front();
        }
        if chat < 0 && group.len() >= 20 {
            let wait = minute - (now - group[0]);
            return Err(wait.as_secs_f64().ceil().max(1.0) as u64);
        }
        let (tokens, at) = self.chat.entry(chat).or_insert((3.0, now));
        let refilled = (*tokens + (now - *at).as_secs_f64()).min(3.0);
        if refilled < 1.0 {
            return Err((1.0 - refilled).ceil().max(1.0) as u64);
        }
        (*tokens, *at) = (refilled - 1.0, now);
        self.bot.push_back(now);
        if chat < 0 {
            group.push_back(now);
        }
        Ok(())
    }
}

#[derive(Default)]
struct Store {
    next_update_id: i64,
    updates: VecDeque<Value>,
    confirmed: i64,
    allowed: Option<Vec<String>>,
    poll_generation: u64,
    chats: HashMap<i64, Value>,
    messages: HashMap<(i64, i64), Value>,
    next_message_id: HashMap<i64, i64>,
    files: HashMap<String, (Vec<u8>, String)>,
    sent: Vec<Sent>,
    actions: Vec<Action>,
    requests: Vec<String>,
    down: bool,
    fail_429: (u32, u32),
    /// Calls of a method (lower case; `download` for files) still to answer 502, as a blip of
    /// the proxy in front would.
    blips: HashMap<String, u32>,
    conflict: bool,
    revoked: bool,
    webhook: Option<(String, Option<String>)>,
    flood: Flood,
    /// The flood limits' clock, when a test holds it still (None: the real one).
    clock: Option<Instant>,
}

impl Store {
    /// Whether this call of `method` is one of the blips asked for (and counts it).
    fn blip(&mut self, method: &str) -> bool {
        match self.blips.get_mut(method) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    fn next_message_id(&mut self, chat: i64) -> i64 {
        let next = self.next_message_id.entry(chat).or_insert(1);
        *next += 1;
        *next - 1
    }

    /// Learns every chat and message an update mentions, as the real API knows every chat
    /// the bot was ever in (sending anywhere else is "chat not found").
    fn learn(&mut self, v: &Value) {
        let Some(obj) = v.as_object() else {
            if let Some(items) = v.as_array() {
                items.iter().for_each(|i| self.learn(i));
            }
            return;
        };
        if let Some(chat_id) = obj.get("chat").and_then(|c| c["id"].as_i64()) {
            self.chats.insert(chat_id, obj["chat"].clone());
            if let Some(id) = obj.get("message_id").and_then(Value::as_i64) {
                self.messages.insert((chat_id, id), v.clone());
                let next = self.next_message_id.entry(chat_id).or_insert(1);
                *next = (*next).max(id + 1);
            }
        }
        obj.values().for_each(|v| self.learn(v));
    }

    fn queue(&mut self, mut update: Value) -> i64 {
        let id = match update["update_id"].as_i64() {
            Some(id) => id,
            None => {
                update["update_id"] = json!(self.next_update_id);
                self.next_update_id
            }
        };
        self.next_update_id = self.next_update_id.max(id + 1);
        self.learn(&update);
        self.updates.push_back(update);
        id
    }

    /// Forgets the updates an offset confirms; a negative offset keeps only that many of
    /// the newest, as in the real API.
    fn confirm(&mut self, offset: i64) {
        if offset < 0 {
            let keep = offset.unsigned_abs() as usize;
            while self.updates.len() > keep {
                self.updates.pop_front();
            }
            let first = self.updates.front().and_then(|u| u["update_id"].as_i64());
            self.confirmed = self.confirmed.max(first.unwrap_or(self.next_update_id));
        } else if offset > 0 {
            self.updates
                .retain(|u| u["update_id"].as_i64() >= Some(offset));
            self.confirmed = self.confirmed.max(offset);
        }
    }

    fn wanted(&self, update: &Value) -> bool {
        let kind = update
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "update_id"))
            .map_or("", String::as_str);
        match &self.allowed {
            Some(kinds) if !kinds.is_empty() => kinds.iter().any(|k| k == kind),
            _ => !OPT_IN_KINDS.contains(&kind),
        }
    }
}

struct Inner {
    token: String,
    bot_id: i64,
    store: Mutex<Store>,
    /// Wakes long polls: on a new update, a newer poll, and any switch that ends them.
    wake: tokio::sync::Notify,
}

impl Inner {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bot_user(&self) -> Value {
        json!({"id": self.bot_id, "is_bot": true, "first_name": "Test Bot", "username": "test_bot"})
    }
}

pub struct FakeTelegram {
    /// The api_base: "http://127.0.0.1:PORT".
    pub base: String,
    pub token: String,
    inner: Arc<Inner>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        // Without blocking, so that a fake owned by an async test can be dropped there.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl FakeTelegram {
    /// Serves the API for `token` ("123456:ABC-xyz"; the bot's id is the part before ':').
    pub fn start(token: &str) -> Self {
        let bot_id = token
            .split(':')
            .next()
            .and_then(|id| id.parse().ok())
            .expect("a bot token looks like 123456:ABC-xyz");
        let store = Store {
            next_update_id: 1000,
            flood: Flood {
                enabled: true,
                ..Flood::default()
            },
            ..Store::default()
        };
        let inner = Arc::new(Inner {
            token: token.to_string(),
            bot_id,
            store: Mutex::new(store),
            wake: tokio::sync::Notify::new(),
        });
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // Bound without block_on, so that the fake can start inside an async test too.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap()
        });
        Self {
            base: format!("http://{addr}"),
            token: token.to_string(),
            inner,
            rt: Some(rt),
        }
    }

    fn change<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let out = f(&mut self.inner.store());
        self.inner.wake.notify_waiters();
        out
    }

    pub fn bot_id(&self) -> i64 {
        self.inner.bot_id
    }

    pub fn username(&self) -> String {
        "test_bot".to_string()
    }

    pub fn private_text(&self, user_id: i64, text: &str) -> (i64, i64) {
        self.push_message(json!({
            "from": user(user_id),
            "chat": {"id": user_id, "type": "private", "first_name": format!("User{user_id}"),
                     "username": format!("user{user_id}")},
            "text": text,
        }))
    }

    pub fn group_text(&self, chat_id: i64, user_id: i64, text: &str) -> (i64, i64) {
        self.push_message(json!({
            "from": user(user_id),
            "chat": {"id": chat_id, "type": "supergroup", "title": format!("Group {chat_id}")},
            "text": text,
        }))
    }

    /// Queues any message object as a "message" update, filling message_id and date.
    pub fn push_message(&self, mut message: Value) -> (i64, i64) {
        self.change(|s| {
            let chat = message["chat"]["id"].as_i64().unwrap_or(0);
            let id = match message["message_id"].as_i64() {
                Some(id) => id,
                None => s.next_message_id(chat),
            };
            message["message_id"] = json!(id);
            if message.get("date").is_none() {
                message["date"] = json!(now_unix());
            }
            (s.queue(json!({"message": message})), id)
        })
    }

    /// Queues a raw update, filling update_id if absent.
    pub fn push_update(&self, update: Value) -> i64 {
        self.change(|s| s.queue(update))
    }

    pub fn add_file(&self, file_id: &str, bytes: Vec<u8>, file_path: &str) {
        let entry = (bytes, file_path.to_string());
        self.change(|s| s.files.insert(file_id.to_string(), entry));
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.inner.store().sent.clone()
    }

    pub fn actions(&self) -> Vec<Action> {
        self.inner.store().actions.clone()
    }

    pub fn requests(&self) -> Vec<String> {
        self.inner.store().requests.clone()
    }

    pub fn confirmed_offset(&self) -> i64 {
        self.inner.store().confirmed
    }

    pub fn pending_updates(&self) -> usize {
        self.inner.store().updates.len()
    }

    /// The webhook URL set by setWebhook, if any.
    pub fn webhook(&self) -> Option<String> {
        self.inner.store().webhook.as_ref().map(|w| w.0.clone())
    }

    pub fn set_down(&self, down: bool) {
        self.change(|s| s.down = down);
    }

    pub fn fail_sends_with_429(&self, count: u32, retry_after: u32) {
        self.change(|s| s.fail_429 = (count, retry_after));
    }

    pub fn set_conflict(&self, on: bool) {
        self.change(|s| s.conflict = on);
    }

    pub fn set_token_revoked(&self, on: bool) {
        self.change(|s| s.revoked = on);
    }

    /// The next `count` calls of `method` (as named in the URL, any case; `download` for file
    /// downloads) answer 502, as a blip of a proxy in front would; the rest as usual.
    pub fn blip(&self, method: &str, count: u32) {
        self.change(|s| s.blips.insert(method.to_ascii_lowercase(), count));
    }

    /// Holds the flood limits' clock still, so that a test of them does not depend on how
    /// fast the machine sends.
    pub fn freeze_clock(&self) {
        self.change(|s| s.clock = Some(Instant::now()));
    }

    /// Moves the held clock on by `d`.
    pub fn advance_clock(&self, d: Duration) {
        self.change(|s| s.clock = s.clock.map(|c| c + d));
    }

    /// Turns the flood limits off (on by default), for tests and benchmarks that measure
    /// something else than pacing.
    pub fn set_flood_control(&self, on: bool) {
        self.change(|s| s.flood.enabled = on);
    }
}

fn user(id: i64) -> Value {
    json!({"id": id, "is_bot": false, "first_name": format!("User{id}"), "username": format!("user{id}")})
}

type Params = Map<String, Value>;

fn ok(result: Value) -> Response {
    Json(json!({"ok": true, "result": result})).into_response()
}

fn fail(code: u16, description: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    let body = json!({"ok": false, "error_code": code, "description": description});
    (status, Json(body)).into_response()
}

fn bad(detail: &str) -> Response {
    fail(400, &format!("Bad Request: {detail}"))
}

fn flood(retry_after: u64) -> Response {
    let body = json!({"ok": false, "error_code": 429,
        "description": format!("Too Many Requests: retry after {retry_after}"),
        "parameters": {"retry_after": retry_after}});
    (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response()
}

fn bad_gateway() -> Response {
    let page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
                <center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n\
                </body>\r\n</html>\r\n";
    (StatusCode::BAD_GATEWAY, Html(page)).into_response()
}

fn int(p: &Params, key: &str) -> Option<i64> {
    match p.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text(p: &Params, key: &str) -> Option<String> {
    match p.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn flag(p: &Params, key: &str) -> bool {
    match p.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true" || s == "1",
        Some(Value::Number(n)) => n.as_i64() != Some(0),
        _ => false,
    }
}

/// An object or array parameter: JSON in a JSON body, a JSON string in a query or form.
fn structured(p: &Params, key: &str) -> Option<Value> {
    match p.get(key)? {
        Value::String(s) => serde_json::from_str(s).ok(),
        v => Some(v.clone()),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escaped = b
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (b[i], escaped) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 2;
            }
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_form(s: &str, into: &mut Params) {
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        into.insert(percent_decode(k), Value::String(percent_decode(v)));
    }
}

/// The call's parameters from the query string and a JSON or urlencoded body (the body
/// wins where both give one).
fn params(uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Result<Params, &'static str> {
    let mut p = Params::new();
    parse_form(uri.query().unwrap_or(""), &mut p);
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if kind.starts_with("application/json") && !body.is_empty() {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => p.extend(m),
            _ => return Err("can't parse JSON"),
        }
    } else if kind.starts_with("application/x-www-form-urlencoded") {
        parse_form(&String::from_utf8_lossy(body), &mut p);
    }
    Ok(p)
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_start_matches('/');
    if let Some(rest) = path.strip_prefix("file/") {
        return download(&inner, rest);
    }
    let Some((token, method)) = path
        .split_once('/')
        .and_then(|(t, m)| Some((t.strip_prefix("bot")?, m)))
    else {
        return fail(404, "Not Found");
    };
    {
        let mut s = inner.store();
        s.requests.push(method.to_string());
        if s.down || s.blip(&method.to_ascii_lowercase()) {
            return bad_gateway();
        }
        if token != inner.token || s.revoked {
            return fail(401, "Unauthorized");
        }
    }
    let p = match params(&uri, &headers, &body) {
        Ok(p) => p,
        Err(detail) => return bad(detail),
    };
    // Method names are case-insensitive in the real API.
    match method.to_ascii_lowercase().as_str() {
        "getupdates" => get_updates(inner, p).await,
        "getme" => {
            let mut me = inner.bot_user();
            me["can_join_groups"] = json!(true);
            me["can_read_all_group_messages"] = json!(false);
            me["supports_inline_queries"] = json!(false);
            ok(me)
        }
        "sendmessage" => send_message(&inner, &p),
        "sendchataction" => send_chat_action(&inner, &p),
        "getfile" => get_file(&inner, &p),
        "setwebhook" => {
            let url = text(&p, "url").unwrap_or_default();
            let hook = (!url.is_empty()).then(|| (url, text(&p, "secret_token")));
            inner.store().webhook = hook;
            inner.wake.notify_waiters();
            ok(json!(true))
        }
        "deletewebhook" => {
            let mut s = inner.store();
            s.webhook = None;
            if flag(&p, "drop_pending_updates") {
                s.updates.clear();
            }
            drop(s);
            inner.wake.notify_waiters();
            ok(json!(true))
        }
        "getwebhookinfo" => {
            let s = inner.store();
            let url = s.webhook.as_ref().map_or("", |w| w.0.as_str());
            ok(json!({"url": url, "has_custom_certificate": false,
                      "pending_update_count": s.updates.len()}))
        }
        _ => fail(404, "Not Found"),
    }
}

async fn get_updates(inner: Arc<Inner>, p: Params) -> Response {
    let limit = int(&p, "limit").unwrap_or(100).clamp(1, 100) as usize;
    // The real server caps a long poll at 50 seconds.
    let timeout = int(&p, "timeout").unwrap_or(0).clamp(0, 50) as u64;
    let generation = {
        let mut s = inner.store();
        // Refused before it confirms anything or ends the poll in progress.
        if s.webhook.is_some() {
            return fail(409, WEBHOOK_ACTIVE);
        }
        if s.conflict {
            return fail(409, TERMINATED);
        }
        if let Some(kinds) = structured(&p, "allowed_updates").and_then(|v| v.as_array().cloned()) {
            // Like the real API, the filter stays in force for later calls that omit it.
            let kinds = kinds.iter().filter_map(|k| k.as_str().map(String::from));
            s.allowed = Some(kinds.collect());
        }
        if let Some(offset) = int(&p, "offset") {
            s.confirm(offset);
        }
        s.poll_generation += 1;
        s.poll_generation
    };
    // Ends the poll this one replaces.
    inner.wake.notify_waiters();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        let woken = inner.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        {
            let s = inner.store();
            if s.down {
                return bad_gateway();
            }
            if s.revoked {
                return fail(401, "Unauthorized");
            }
            if s.webhook.is_some() {
                return fail(409, WEBHOOK_ACTIVE);
            }
            if s.conflict || s.poll_generation != generation {
                return fail(409, TERMINATED);
            }
            let found: Vec<Value> = s
                .updates
                .iter()
                .filter(|u| s.wanted(u))
                .take(limit)
                .cloned()
                .collect();
            if !found.is_empty() || tokio::time::Instant::now() >= deadline {
                return ok(Value::Array(found));
            }
        }
        tokio::select! {
            _ = &mut woken => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// The chat a chat_id names, if the bot knows it; else why not, as a Bad Request detail.
fn find_chat(s: &Store, p: &Params) -> Result<i64, &'static str> {
    let Some(raw) = text(p, "chat_id").filter(|c| !c.is_empty()) else {
        return Err("chat_id is empty");
    };
    let known = match (raw.parse::<i64>(), raw.strip_prefix('@')) {
        (Ok(id), _) => s.chats.contains_key(&id).then_some(id),
        (_, Some(name)) => s
            .chats
            .iter()
            .find(|(_, c)| c["username"].as_str() == Some(name))
            .map(|(id, _)| *id),
        _ => None,
    };
    known.ok_or("chat not found")
}

fn send_message(inner: &Inner, p: &Params) -> Response {
    let mut s = inner.store();
    if s.fail_429.0 > 0 {
        s.fail_429.0 -= 1;
        return flood(s.fail_429.1.into());
    }
    let chat_id = match find_chat(&s, p) {
        Err(e) if text(p, "chat_id").is_none_or(|c| c.is_empty()) => return bad(e),
        found => found,
    };
    let raw = text(p, "text").unwrap_or_default();
    let parse_mode = text(p, "parse_mode").filter(|m| !m.is_empty());
    let parsed = match parse_mode.as_deref() {
        None => Ok(raw.clone()),
        Some(m) if m.eq_ignore_ascii_case("html") => parse_html(&raw),
        Some(m) if m.eq_ignore_ascii_case("markdownv2") => parse_markdown_v2(&raw),
        Some(m) if m.eq_ignore_ascii_case("markdown") => parse_markdown(&raw),
        Some(_) => return bad("unsupported parse_mode"),
    };
    let plain = match parsed {
        Ok(plain) => plain,
        Err(detail) => return bad(&format!("can't parse entities: {detail}")),
    };
    if plain.trim().is_empty() {
        return bad("message text is empty");
    }
    let chat_id = match chat_id {
        Ok(id) => id,
        Err(e) => return bad(e),
    };
    if plain.encode_utf16().count() > 4096 {
        return bad("message is too long");
    }
    let reply = structured(p, "reply_parameters").unwrap_or_default();
    let reply_to = reply["message_id"]
        .as_i64()
        .or_else(|| int(p, "reply_to_message_id"));
    let replied = reply_to.and_then(|id| s.messages.get(&(chat_id, id)).cloned());
    let without_reply = reply["allow_sending_without_reply"].as_bool() == Some(true)
        || flag(p, "allow_sending_without_reply");
    if reply_to.is_some() && replied.is_none() && !without_reply {
        return bad("message to be replied not found");
    }
    let now = s.clock.unwrap_or_else(Instant::now);
    if let Err(wait) = s.flood.admit(chat_id, now) {
        return flood(wait);
    }
    let message_id = s.next_message_id(chat_id);
    let thread = int(p, "message_thread_id");
    let mut message = json!({"message_id": message_id, "date": now_unix(),
        "chat": s.chats[&chat_id].clone(), "from": inner.bot_user(), "text": plain});
    if let Some(thread) = thread {
        message["message_thread_id"] = json!(thread);
    }
    if let Some(replied) = &replied {
        message["reply_to_message"] = replied.clone();
    }
    s.messages.insert((chat_id, message_id), message.clone());
    s.sent.push(Sent {
        chat_id,
        message_id,
        text: raw,
        reply_to_message_id: replied.map(|_| reply_to.unwrap_or_default()),
        message_thread_id: thread,
        parse_mode,
        at: now,
    });
    ok(message)
}

fn send_chat_action(inner: &Inner, p: &Params) -> Response {
    let mut s = inner.store();
    let chat_id = match find_chat(&s, p) {
        Ok(id) => id,
        Err(e) => return bad(e),
    };
    let action = text(p, "action").unwrap_or_default();
    if !listed(CHAT_ACTIONS, &action) {
        return bad("wrong parameter action in request");
    }
    let message_thread_id = int(p, "message_thread_id");
    let at = Instant::now();
    s.actions.push(Action {
        chat_id,
        action,
        message_thread_id,
        at,
    });
    ok(json!(true))
}

fn get_file(inner: &Inner, p: &Params) -> Response {
    let file_id = text(p, "file_id").unwrap_or_default();
    let s = inner.store();
    let Some((bytes, path)) = s.files.get(&file_id) else {
        return bad("invalid file_id");
    };
    if bytes.len() > MAX_DOWNLOAD {
        return bad("file is too big");
    }
    ok(
        json!({"file_id": file_id, "file_unique_id": format!("u-{file_id}"),
              "file_size": bytes.len(), "file_path": path}),
    )
}

/// GET /file/bot<token>/<file_path>.
fn download(inner: &Inner, rest: &str) -> Response {
    let mut s = inner.store();
    if s.down || s.blip("download") {
        return bad_gateway();
    }
    let Some((token, path)) = rest
        .split_once('/')
        .and_then(|(t, p)| Some((t.strip_prefix("bot")?, p)))
    else {
        return fail(404, "Not Found");
    };
    if token != inner.token || s.revoked {
        return fail(401, "Unauthorized");
    }
    let path = percent_decode(path);
    match s.files.values().find(|(_, p)| *p == path) {
        Some((bytes, _)) if bytes.len() <= MAX_DOWNLOAD => {
            let kind = [(header::CONTENT_TYPE, "application/octet-stream")];
            (kind, Bytes::copy_from_slice(bytes)).into_response()
        }
        _ => fail(404, "Not Found"),
    }
}

fn reserved(c: char) -> String {
    format!("Character '{c}' is reserved and must be escaped with the preceding '\\'")
}

/// Checks text as the "HTML" parse mode and returns it without markup.
fn parse_html(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut open: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(c) = text[i..].chars().next() {
        match c {
            '<' => {
                let rest = &text[i + 1..];
                let closing = rest.starts_with('/');
                let name: String = rest[usize::from(closing)..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect::<String>()
                    .to_ascii_lowercase();
                if !closing && !listed(HTML_TAGS, &name) {
                    return Err(format!(
                        "Unsupported start tag \"{name}\" at byte offset {i}"
                    ));
                }
                let Some(end) = rest.find('>') else {
                    let what = if closing { "end" } else { "start" };
                    return Err(format!("Unclosed {what} tag at byte offset {i}"));
                };
                if closing {
                    match open.pop() {
                        None => return Err(format!("Unexpected end tag at byte offset {i}")),
                        Some(tag) if tag != name => {
                            return Err(format!(
                                "Unmatched end tag at byte offset {i}, expected \"</{tag}>\", found \"</{name}>\""
                            ))
                        }
                        Some(_) => {}
                    }
                } else {
                    open.push(name);
                }
                i += end + 2;
            }
            '&' => {
                let (ch, len) = html_entity(&text[i..])
                    .ok_or_else(|| format!("Unsupported character entity at byte offset {i}"))?;
                out.push(ch);
                i += len;
            }
            c => {
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    match open.pop() {
        Some(tag) => Err(format!(
            "Can't find end tag corresponding to start tag \"{tag}\""
        )),
        None => Ok(out),
    }
}

fn html_entity(s: &str) -> Option<(char, usize)> {
    let semi = s.find(';').filter(|&n| n <= 10)?;
    let c = match &s[1..semi] {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        name => {
            let hex = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X"));
            let code = match hex {
                Some(h) => u32::from_str_radix(h, 16).ok()?,
                None => name.strip_prefix('#')?.parse().ok()?,
            };
            char::from_u32(code)?
        }
    };
    Some((c, semi + 1))
}

/// Checks text as "MarkdownV2": bold, italic, underline, strikethrough, spoiler, code,
/// pre, links and line-leading quotes; any other reserved character must be escaped.
fn parse_markdown_v2(text: &str) -> Result<String, String> {
    const NAMES: [(&str, &str); 6] = [
        ("*", "Bold"),
        ("__", "Underline"),
        ("_", "Italic"),
        ("~", "Strikethrough"),
        ("||", "Spoiler"),
        ("[", "TextUrl"),
    ];
    let end_missing = |marker: &str, at: usize| {
        let name = NAMES.iter().find(|(m, _)| *m == marker).map_or("", |n| n.1);
        format!("Can't find end of {name} entity at byte offset {at}")
    };
    let mut out = String::new();
    let mut open: Vec<(&str, usize)> = Vec::new();
    let mut i = 0;
    while let Some(c) = text[i..].chars().next() {
        let rest = &text[i..];
        let next = rest[c.len_utf8()..].chars().next();
        if c == '\\' && next.is_some_and(|n| (n as u32) < 127) {
            out.push(next.unwrap());
            i += 2;
            continue;
        }
        if c == '`' {
            let fence = if rest.starts_with("```") { "```" } else { "`" };
            let body = &rest[fence.len()..];
            let close = unescaped(body, fence).ok_or_else(|| {
                let name = if fence == "`" { "Code" } else { "Pre" };
                format!("Can't find end of {name} entity at byte offset {i}")
            })?;
            out.push_str(&body[..close].replace("\\`", "`").replace("\\\\", "\\"));
            i += fence.len() * 2 + close;
            continue;
        }
        let marker = NAMES
            .iter()
            .map(|n| n.0)
            .find(|m| rest.starts_with(m) && *m != "[");
        if let Some(marker) = marker {
            match open.iter().rposition(|(m, _)| *m == marker) {
                Some(k) if k + 1 == open.len() => drop(open.pop()),
                Some(k) => return Err(end_missing(open[k + 1].0, open[k + 1].1)),
                None => open.push((marker, i)),
            }
            i += marker.len();
            continue;
        }
        match c {
            '[' => open.push(("[", i)),
            ']' if open.last().is_some_and(|m| m.0 == "[") => {
                let Some(url) = rest[1..].strip_prefix('(') else {
                    return Err(reserved(']'));
                };
                let close = unescaped(url, ")").ok_or_else(|| end_missing("[", i))?;
                open.pop();
                i += close + 3;
                continue;
            }
            '>' if i == 0 || text[..i].ends_with('\n') => {}
            c if "_*[]()~`>#+-=|{}.!".contains(c) => return Err(reserved(c)),
            c => out.push(c),
        }
        i += c.len_utf8();
    }
    match open.last() {
        Some((marker, at)) => Err(end_missing(marker, *at)),
        None => Ok(out),
    }
}

/// Where `needle` first occurs in `s` not escaped by a backslash.
fn unescaped(s: &str, needle: &str) -> Option<usize> {
    let mut i = 0;
    while i < s.len() {
        if s[i..].starts_with('\\') {
            i += 1 + s[i + 1..].chars().next().map_or(0, char::len_utf8);
        } else if s[i..].starts_with(needle) {
            return Some(i);
        } else {
            i += s[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    None
}

/// Checks text as the legacy "Markdown" mode: `_`, `*`, `` ` ``, ``` and `[` must close.
fn parse_markdown(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut i = 0;
    while let Some(c) = text[i..].chars().next() {
        let rest = &text[i..];
        if c == '\\' && rest[1..].starts_with(['_', '*', '`', '[']) {
            out.push_str(&rest[1..2]);
            i += 2;
            continue;
        }
        let marker = match c {
            '`' if rest.starts_with("```") => "```",
            '_' | '*' | '`' | '[' => &rest[..1],
            c => {
                out.push(c);
                i += c.len_utf8();
                continue;
            }
        };
        let closer = if marker == "[" { "]" } else { marker };
        let body = &rest[marker.len()..];
        let close = body
            .find(closer)
            .ok_or_else(|| format!("Can't find end of the entity starting at byte offset {i}"))?;
        out.push_str(&body[..close]);
        i += marker.len() + close + closer.len();
        if marker == "[" && text[i..].starts_with('(') {
            let url_end = text[i..]
                .find(')')
                .ok_or_else(|| format!("Can't find end of a URL at byte offset {i}"))?;
            i += url_end + 1;
        }
    }
    Ok(out)
}
