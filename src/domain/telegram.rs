//! Telegram's rules, pure and unit-tested: the parts of an update the channel reads, who a
//! message is addressed to, the conversation and stored id it gets, how an answer is split
//! into messages Telegram takes, how fast a bot may send, and pairing codes.

use serde::Deserialize;

/// The channel's name: its senders are `telegram:<user id>`, its chats `telegram:<chat id>`
/// (and `telegram:<chat id>/<topic id>` for a forum topic).
pub const TELEGRAM: &str = "telegram";

/// Most characters one message may carry, as Telegram counts them (UTF-16 code units).
pub const MAX_MESSAGE_UNITS: usize = 4096;

/// The updates the poller asks for: messages only (edits, reactions and the rest are not
/// conversation the agent answers).
pub const ALLOWED_UPDATES: &[&str] = &["message"];

#[derive(Debug, Clone, Deserialize)]
pub struct Update {
    pub update_id: i64,
    #[serde(default)]
    pub message: Option<Message>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub message_id: i64,
    #[serde(default)]
    pub from: Option<User>,
    pub chat: Chat,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub caption: Option<String>,
    #[serde(default)]
    pub entities: Vec<Entity>,
    #[serde(default)]
    pub caption_entities: Vec<Entity>,
    #[serde(default)]
    pub reply_to_message: Option<Box<Message>>,
    #[serde(default)]
    pub message_thread_id: Option<i64>,
    #[serde(default)]
    pub is_topic_message: bool,
    #[serde(default)]
    pub photo: Vec<PhotoSize>,
    #[serde(default)]
    pub document: Option<Document>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: i64,
    #[serde(default)]
    pub is_bot: bool,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
}

/// Most characters of a sender's shown name.
const MAX_NAME_CHARS: usize = 64;

impl User {
    /// How they call themself, on one line and short: `Ann Lee (@ann)`. Anyone can name
    /// themself anything, so it is only ever shown beside their sender key, never trusted.
    pub fn shown_name(&self) -> String {
        let mut name = self.first_name.trim().to_string();
        if let Some(last) = self
            .last_name
            .as_deref()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            name = format!("{name} {last}");
        }
        if let Some(u) = self.username.as_deref().filter(|u| !u.is_empty()) {
            name = if name.is_empty() {
                format!("@{u}")
            } else {
                format!("{name} (@{u})")
            };
        }
        let line = crate::domain::escape::line(&name).into_owned();
        match line.char_indices().nth(MAX_NAME_CHARS) {
            Some((at, _)) => format!("{}…", &line[..at]),
            None => line,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Chat {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub title: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Entity {
    #[serde(rename = "type")]
    pub kind: String,
    pub offset: usize,
    pub length: usize,
    #[serde(default)]
    pub user: Option<User>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PhotoSize {
    pub file_id: String,
    pub file_unique_id: String,
    #[serde(default)]
    pub file_size: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Document {
    pub file_id: String,
    pub file_unique_id: String,
    #[serde(default)]
    pub file_name: Option<String>,
    #[serde(default)]
    pub file_size: Option<u64>,
}

/// The bot itself, as `getMe` tells.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Bot {
    pub id: i64,
    #[serde(default)]
    pub username: String,
}

impl Message {
    pub fn is_private(&self) -> bool {
        self.chat.kind == "private"
    }

    /// Its words: the text, or a photo's or document's caption.
    pub fn words(&self) -> &str {
        self.text
            .as_deref()
            .or(self.caption.as_deref())
            .unwrap_or("")
    }

    fn word_entities(&self) -> &[Entity] {
        if self.text.is_some() {
            &self.entities
        } else {
            &self.caption_entities
        }
    }

    /// The file it carries, if any: a document, or the largest size of a photo.
    pub fn attachment(&self) -> Option<Attachment> {
        if let Some(d) = &self.document {
            return Some(Attachment {
                file_id: d.file_id.clone(),
                unique_id: d.file_unique_id.clone(),
                name: d.file_name.clone(),
                size: d.file_size,
                kind: "document",
            });
        }
        self.photo.last().map(|p| Attachment {
            file_id: p.file_id.clone(),
            unique_id: p.file_unique_id.clone(),
            name: None,
            size: p.file_size,
            kind: "photo",
        })
    }
}

/// A file a message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub file_id: String,
    pub unique_id: String,
    /// The name the sender gave it (documents only).
    pub name: Option<String>,
    pub size: Option<u64>,
    /// `photo` or `document`.
    pub kind: &'static str,
}

impl Attachment {
    /// The name it gets in the workspace's `inbox/`: fixed by the update (so that reading
    /// the same update again names the same file), made only of safe characters, and
    /// keeping the sender's extension when it is a plain one.
    pub fn inbox_name(&self, update_id: i64, server_path: Option<&str>) -> String {
        let ext = self
            .name
            .as_deref()
            .or(server_path)
            .and_then(|n| n.rsplit_once('.'))
            .map(|(_, e)| e)
            .filter(|e| (1..=8).contains(&e.len()) && e.chars().all(|c| c.is_ascii_alphanumeric()))
            .map(|e| format!(".{}", e.to_ascii_lowercase()))
            .unwrap_or_default();
        let unique: String = self
            .unique_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(40)
            .collect();
        format!("tg-{update_id}-{}-{unique}{ext}", self.kind)
    }

    /// How the message the agent sees names it.
    pub fn shown_name(&self) -> String {
        match &self.name {
            Some(n) => format!("{} {:?}", self.kind, crate::domain::escape::line(n)),
            None => self.kind.to_string(),
        }
    }
}

/// Whom a message is for, which decides whether it starts a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address {
    /// Said to the bot: a private chat, a mention of it, a reply to it, a command for it.
    Direct,
    /// Said in a group where the bot listens: context, unless the instance's trigger matches.
    Overheard,
}

/// Whether `m` is said to `bot`. Private chats always are; in a group a message is when it
/// mentions the bot (an `@username` or a mention of its user), replies to one of its
/// messages, or is a command with no bot named or this one.
pub fn address(m: &Message, bot: &Bot) -> Address {
    if m.is_private() {
        return Address::Direct;
    }
    if m.reply_to_message
        .as_ref()
        .and_then(|r| r.from.as_ref())
        .is_some_and(|u| u.id == bot.id)
    {
        return Address::Direct;
    }
    let words = m.words();
    let handle = format!("@{}", bot.username.to_ascii_lowercase());
    for e in m.word_entities() {
        let said = utf16_slice(words, e.offset, e.length).to_ascii_lowercase();
        let direct = match e.kind.as_str() {
            "mention" => !bot.username.is_empty() && said == handle,
            "text_mention" => e.user.as_ref().is_some_and(|u| u.id == bot.id),
            "bot_command" => match said.split_once('@') {
                Some((_, to)) => to == bot.username.to_ascii_lowercase(),
                None => true,
            },
            _ => false,
        };
        if direct {
            return Address::Direct;
        }
    }
    // A client that sent no entities: the handle as a word of its own.
    if !bot.username.is_empty() && mentions(words, &handle) {
        return Address::Direct;
    }
    Address::Overheard
}

/// Whether `handle` (`@name`, lower case) stands in `text` as a word of its own.
fn mentions(text: &str, handle: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.match_indices(handle).any(|(at, _)| {
        let before = lower[..at].chars().next_back();
        let after = lower[at + handle.len()..].chars().next();
        let word = |c: char| c.is_alphanumeric() || c == '_';
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

/// The part of `text` at UTF-16 `offset` of `length` units (how Telegram places entities),
/// or `""` where that does not fall on characters.
fn utf16_slice(text: &str, offset: usize, length: usize) -> &str {
    let mut units = 0;
    let (mut start, mut end) = (None, None);
    for (i, c) in text.char_indices() {
        if units == offset {
            start = Some(i);
        }
        if units == offset + length {
            end = Some(i);
        }
        units += c.len_utf16();
    }
    if units == offset + length {
        end = Some(text.len());
    }
    match (start, end) {
        (Some(s), Some(e)) if s <= e => &text[s..e],
        _ => "",
    }
}

/// The sender key of Telegram user `id` (what `allow_from` lists).
pub fn sender_key(user_id: i64) -> String {
    crate::domain::channels::chat_key(TELEGRAM, &user_id.to_string())
}

/// Where a message is answered: a chat, and a forum topic in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub chat_id: i64,
    pub topic: Option<i64>,
}

impl Place {
    pub fn of(m: &Message) -> Self {
        Self {
            chat_id: m.chat.id,
            // Replies in a plain supergroup carry a thread id too; only a forum topic's
            // messages are answered in their thread.
            topic: m.message_thread_id.filter(|_| m.is_topic_message),
        }
    }

    /// Its conversation key: `telegram:<chat id>` or `telegram:<chat id>/<topic id>`.
    pub fn key(&self) -> String {
        let chat = match self.topic {
            Some(t) => format!("{}/{t}", self.chat_id),
            None => self.chat_id.to_string(),
        };
        crate::domain::channels::chat_key(TELEGRAM, &chat)
    }

    /// The place of conversation key `key`, if it is a Telegram one.
    pub fn parse(key: &str) -> Option<Self> {
        let rest = key.strip_prefix(TELEGRAM)?.strip_prefix(':')?;
        let (chat, topic) = match rest.split_once('/') {
            Some((c, t)) => (c, Some(t.parse().ok()?)),
            None => (rest, None),
        };
        Some(Self {
            chat_id: chat.parse().ok()?,
            topic,
        })
    }

    /// Whether it is a group's (groups have negative ids), where the stricter limit holds.
    pub fn is_group(&self) -> bool {
        self.chat_id < 0
    }
}

/// The stored id of update `update_id` (message `message_id`) of bot `bot_id` to `instance`:
/// the same whenever the update is read, so that it is stored once; under a tag of the
/// instance and the bot, so that two never collide; ending in the message's id, which the
/// answer replies to. At most 51 bytes.
pub fn stored_id(instance: &str, bot_id: i64, update_id: i64, message_id: i64) -> String {
    use sha2::Digest;
    let tag = hex::encode(sha2::Sha256::digest(
        format!("{instance}/{bot_id}").as_bytes(),
    ));
    format!("tg-{}-{update_id}-{message_id}", &tag[..8])
}

/// The Telegram message id a stored id ends in, if it is a Telegram message's.
pub fn message_id_of(stored: &str) -> Option<i64> {
    stored
        .strip_prefix("tg-")?
        .rsplit_once('-')
        .and_then(|(_, m)| m.parse().ok())
}

/// `text` in parts Telegram takes (at most [`MAX_MESSAGE_UNITS`] each), in order: cut at the
/// last paragraph break that fits, else the last line break, else the last sentence end,
/// else the last space, else between characters. Blank parts are dropped.
pub fn split(text: &str, max_units: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if units(rest) <= max_units {
            parts.push(rest.to_string());
            break;
        }
        let fits = prefix_of_units(rest, max_units);
        let head = &rest[..fits];
        let cut = last_cut(head, "\n\n")
            .or_else(|| last_cut(head, "\n"))
            .or_else(|| last_sentence_end(head))
            .or_else(|| last_cut(head, " "))
            .unwrap_or(fits);
        let part = rest[..cut].trim_end();
        if !part.is_empty() {
            parts.push(part.to_string());
        }
        rest = rest[cut..].trim_start();
    }
    parts
}

fn units(s: &str) -> usize {
    s.encode_utf16().count()
}

/// The byte length of the longest prefix of `s` within `max` UTF-16 units.
fn prefix_of_units(s: &str, max: usize) -> usize {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        used += c.len_utf16();
        if used > max {
            return i;
        }
    }
    s.len()
}

/// Where to cut `head` after the last `sep` in it (not at its very start).
fn last_cut(head: &str, sep: &str) -> Option<usize> {
    head.rfind(sep).filter(|&i| i > 0).map(|i| i + sep.len())
}

/// Just after the last `.`, `!` or `?` followed by whitespace in `head`.
fn last_sentence_end(head: &str) -> Option<usize> {
    let bytes = head.as_bytes();
    (1..bytes.len())
        .rev()
        .find(|&i| matches!(bytes[i - 1], b'.' | b'!' | b'?') && bytes[i].is_ascii_whitespace())
}

/// How fast a bot may send, by Telegram's published guidance: about one message a second
/// into one chat, twenty a minute into one group, thirty a second in all. Times are Unix ms.
#[derive(Debug, Default)]
pub struct Pace {
    chats: std::collections::HashMap<i64, std::collections::VecDeque<i64>>,
    bot: std::collections::VecDeque<i64>,
    /// A 429 asked the whole bot to wait until then.
    paused_until: i64,
}

pub const PER_CHAT_GAP_MS: i64 = 1000;
pub const PER_GROUP_PER_MINUTE: usize = 20;
pub const PER_BOT_PER_SECOND: usize = 30;

impl Pace {
    /// How long a message into `place` must wait from `now` (0: it may go now).
    pub fn wait_ms(&self, place: Place, now: i64) -> i64 {
        let mut until = self.paused_until;
        if let Some(sent) = self.chats.get(&place.chat_id) {
            if let Some(last) = sent.back() {
                until = until.max(last + PER_CHAT_GAP_MS);
            }
            if place.is_group() && sent.len() >= PER_GROUP_PER_MINUTE {
                until = until.max(sent[sent.len() - PER_GROUP_PER_MINUTE] + 60_000);
            }
        }
        if self.bot.len() >= PER_BOT_PER_SECOND {
            until = until.max(self.bot[self.bot.len() - PER_BOT_PER_SECOND] + 1000);
        }
        (until - now).max(0)
    }

    /// Records a message sent into `place` at `now`.
    pub fn sent(&mut self, place: Place, now: i64) {
        let chat = self.chats.entry(place.chat_id).or_default();
        chat.push_back(now);
        while chat.len() > PER_GROUP_PER_MINUTE {
            chat.pop_front();
        }
        self.bot.push_back(now);
        while self.bot.len() > PER_BOT_PER_SECOND {
            self.bot.pop_front();
        }
        // Chats quiet for a minute need no memory.
        if self.chats.len() > 1024 {
            self.chats
                .retain(|_, s| s.back().is_some_and(|&t| now - t < 60_000));
        }
    }

    /// Takes a message's place in the pace: 0 when it may go now (and is counted as sent),
    /// else how long it must wait (and nothing is counted).
    pub fn reserve(&mut self, place: Place, now: i64) -> i64 {
        let wait = self.wait_ms(place, now);
        if wait == 0 {
            self.sent(place, now);
        }
        wait
    }

    /// Telegram answered 429: nothing goes until `now + retry_after_ms`.
    pub fn pause(&mut self, now: i64, retry_after_ms: i64) {
        self.paused_until = self.paused_until.max(now + retry_after_ms);
    }
}

/// Whether `secret` may be a webhook's secret token: 1 to 256 of `A-Z a-z 0-9 _ -` (the Bot
/// API refuses anything else).
pub fn is_valid_webhook_secret(secret: &str) -> bool {
    (1..=256).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Letters and digits a person cannot misread (no 0/O, 1/I/L).
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// Characters of a pairing code.
pub const CODE_LEN: usize = 6;

/// A pairing code from `random` bits.
pub fn pairing_code(mut random: u128) -> String {
    let n = CODE_ALPHABET.len() as u128;
    (0..CODE_LEN)
        .map(|_| {
            let c = CODE_ALPHABET[(random % n) as usize] as char;
            random /= n;
            c
        })
        .collect()
}

/// A pairing code as an operator may type it (any case, spaces around) made canonical.
pub fn normalize_code(typed: &str) -> Option<String> {
    let code = typed.trim().to_ascii_uppercase();
    (code.len() == CODE_LEN && code.bytes().all(|b| CODE_ALPHABET.contains(&b))).then_some(code)
}

/// What the bot answers an unknown sender in a private chat (once an hour at most).
pub fn pairing_reply(instance: &str, code: &str) -> String {
    format!(
        "Hello! I only talk with people my operator has let in. To be let in, give them this \
         code: {code}\n\nThey run: supervisor channels pair {instance} {code}\nThen write to me again."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(json: serde_json::Value) -> Message {
        serde_json::from_value(json).unwrap()
    }

    fn bot() -> Bot {
        Bot {
            id: 42,
            username: "Alice_bot".into(),
        }
    }

    fn group(text: &str, extra: serde_json::Value) -> Message {
        let mut m = serde_json::json!({
            "message_id": 5, "chat": {"id": -100, "type": "supergroup"},
            "from": {"id": 7, "first_name": "Bo"}, "text": text,
        });
        m.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        message(m)
    }

    #[test]
    fn private_chats_are_always_direct_groups_only_when_addressed() {
        let private = message(serde_json::json!({
            "message_id": 1, "chat": {"id": 7, "type": "private"}, "text": "hi"
        }));
        assert_eq!(address(&private, &bot()), Address::Direct);
        assert_eq!(
            address(&group("just chatting", serde_json::json!({})), &bot()),
            Address::Overheard
        );
        let mention = group(
            "hey @alice_BOT what's up",
            serde_json::json!({"entities": [{"type": "mention", "offset": 4, "length": 10}]}),
        );
        assert_eq!(address(&mention, &bot()), Address::Direct);
        // Offsets count UTF-16 units: an emoji before the mention takes two.
        let after_emoji = group(
            "😀 @alice_bot",
            serde_json::json!({"entities": [{"type": "mention", "offset": 3, "length": 10}]}),
        );
        assert_eq!(address(&after_emoji, &bot()), Address::Direct);
        let other = group(
            "hey @bob_bot",
            serde_json::json!({"entities": [{"type": "mention", "offset": 4, "length": 8}]}),
        );
        assert_eq!(address(&other, &bot()), Address::Overheard);
        let reply = group(
            "thanks",
            serde_json::json!({"reply_to_message": {"message_id": 4, "chat": {"id": -100, "type": "supergroup"}, "from": {"id": 42, "is_bot": true}}}),
        );
        assert_eq!(address(&reply, &bot()), Address::Direct);
        let reply_to_person = group(
            "thanks",
            serde_json::json!({"reply_to_message": {"message_id": 4, "chat": {"id": -100, "type": "supergroup"}, "from": {"id": 9}}}),
        );
        assert_eq!(address(&reply_to_person, &bot()), Address::Overheard);
        let command = group(
            "/help@alice_bot",
            serde_json::json!({"entities": [{"type": "bot_command", "offset": 0, "length": 15}]}),
        );
        assert_eq!(address(&command, &bot()), Address::Direct);
        let others_command = group(
            "/help@bob_bot",
            serde_json::json!({"entities": [{"type": "bot_command", "offset": 0, "length": 13}]}),
        );
        assert_eq!(address(&others_command, &bot()), Address::Overheard);
        // Without entities the handle still counts, but only as a word of its own.
        assert_eq!(
            address(&group("@alice_bot, hi", serde_json::json!({})), &bot()),
            Address::Direct
        );
        assert_eq!(
            address(&group("mail@alice_bots.org", serde_json::json!({})), &bot()),
            Address::Overheard
        );
    }

    #[test]
    fn a_senders_name_is_one_short_line() {
        let user = |json| serde_json::from_value::<User>(json).unwrap().shown_name();
        assert_eq!(
            user(
                serde_json::json!({"id": 1, "first_name": "Ann", "last_name": "Lee", "username": "ann"})
            ),
            "Ann Lee (@ann)"
        );
        assert_eq!(user(serde_json::json!({"id": 1, "first_name": "Bo"})), "Bo");
        assert_eq!(user(serde_json::json!({"id": 1, "username": "cy"})), "@cy");
        let odd =
            user(serde_json::json!({"id": 1, "first_name": format!("a\nb{}", "x".repeat(100))}));
        assert!(
            !odd.contains('\n') && odd.chars().count() <= MAX_NAME_CHARS + 1,
            "{odd}"
        );
    }

    #[test]
    fn places_key_chats_and_forum_topics() {
        let topic = group(
            "x",
            serde_json::json!({"message_thread_id": 3, "is_topic_message": true}),
        );
        assert_eq!(Place::of(&topic).key(), "telegram:-100/3");
        let reply_thread = group("x", serde_json::json!({"message_thread_id": 3}));
        assert_eq!(Place::of(&reply_thread).key(), "telegram:-100");
        for key in ["telegram:-100/3", "telegram:7"] {
            assert_eq!(Place::parse(key).unwrap().key(), key);
        }
        assert_eq!(Place::parse("webhook:7"), None);
        assert_eq!(Place::parse("telegram:x"), None);
        assert!(Place::parse("telegram:-5").unwrap().is_group());
    }

    #[test]
    fn stored_ids_are_fixed_per_update_and_name_the_message() {
        let id = stored_id("alice", 123456789, 900001, 77);
        assert_eq!(id, stored_id("alice", 123456789, 900001, 77));
        assert_ne!(id, stored_id("bob", 123456789, 900001, 77));
        assert_ne!(id, stored_id("alice", 987654321, 900001, 77));
        let fits = id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        assert!(fits, "{id}");
        // The longest ids there are still fit.
        assert!(stored_id("alice", i64::MAX, i64::MAX, i64::MAX).len() <= 64);
        assert_eq!(message_id_of(&id), Some(77));
        assert_eq!(message_id_of("wh-1234abcd-77"), None);
    }

    #[test]
    fn long_answers_split_at_paragraphs_then_lines_then_sentences() {
        let para = "a".repeat(3000);
        let text = format!("{para}\n\n{para}");
        assert_eq!(split(&text, 4096), vec![para.clone(), para.clone()]);
        let text = format!("{para}\n{para}");
        assert_eq!(split(&text, 4096), vec![para.clone(), para.clone()]);
        let sentence = format!("{}.", "b".repeat(2999));
        let text = format!("{sentence} {sentence}");
        assert_eq!(split(&text, 4096), vec![sentence.clone(), sentence]);
        // No boundary at all: cut between characters, never inside one.
        let emoji = "😀".repeat(3000);
        let parts = split(&emoji, 4096);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| units(p) <= 4096));
        assert_eq!(parts.concat(), emoji);
        assert_eq!(split("  short  ", 4096), vec!["short"]);
        assert!(split(" \n ", 4096).is_empty());
        // Every part fits, nothing is lost but the whitespace at the cuts.
        let words = "word ".repeat(5000);
        let parts = split(&words, 4096);
        assert!(parts.iter().all(|p| units(p) <= 4096));
        assert_eq!(
            parts.join(" ").split_whitespace().count(),
            words.split_whitespace().count()
        );
    }

    #[test]
    fn the_pace_keeps_to_telegrams_limits() {
        let mut pace = Pace::default();
        let chat = Place {
            chat_id: 7,
            topic: None,
        };
        assert_eq!(pace.wait_ms(chat, 0), 0);
        pace.sent(chat, 0);
        assert_eq!(pace.wait_ms(chat, 200), 800, "one a second per chat");
        let group = Place {
            chat_id: -5,
            topic: None,
        };
        for i in 0..20 {
            pace.sent(group, i * 1000);
        }
        assert_eq!(
            pace.wait_ms(group, 20_000),
            40_000,
            "twenty a minute per group"
        );
        let mut bot = Pace::default();
        for c in 0..30 {
            bot.sent(
                Place {
                    chat_id: c,
                    topic: None,
                },
                100,
            );
        }
        let fresh = Place {
            chat_id: 99,
            topic: None,
        };
        assert_eq!(bot.wait_ms(fresh, 100), 1000, "thirty a second per bot");
        bot.pause(100, 5000);
        assert_eq!(bot.wait_ms(fresh, 2000), 3100);
    }

    #[test]
    fn pairing_codes_are_short_and_unambiguous() {
        let code = pairing_code(u128::MAX / 3);
        assert_eq!(code.len(), CODE_LEN);
        assert_eq!(
            normalize_code(&format!(" {} ", code.to_lowercase())),
            Some(code)
        );
        assert_eq!(normalize_code("ABC0O1"), None);
        assert_eq!(normalize_code("ABC"), None);
    }

    #[test]
    fn attachments_get_fixed_safe_names() {
        let a = Attachment {
            file_id: "f".into(),
            unique_id: "AQAD../x".into(),
            name: Some("../../etc/passwd.PDF".into()),
            size: Some(10),
            kind: "document",
        };
        assert_eq!(a.inbox_name(5, None), "tg-5-document-AQADx.pdf");
        let photo = Attachment {
            name: None,
            kind: "photo",
            ..a
        };
        assert_eq!(
            photo.inbox_name(5, Some("photos/file_1.jpg")),
            "tg-5-photo-AQADx.jpg"
        );
    }
}
