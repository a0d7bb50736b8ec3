//! Accepting a message: the one way in for every source of messages (the CLI when no daemon
//! runs, the daemon's socket and HTTP API, and the chat channels). A message is checked (its
//! text, its id, its instance), judged by the router's policy against the instance's last
//! valid config ([`LastGoodConfigs`], the same way whether or not a daemon runs), committed
//! to the store, and then handed to whoever answers it ([`Courier`]).
//!
//! With `"isolation": "chat"`, a channel's message is judged by the instance's config and then
//! stored on the group that serves its chat ([`Route`]): the first message that starts a turn
//! in a chat makes its group; what is said there before that waits on the instance
//! and moves into the group with it.
//!
//! Handing it over is cheap on purpose: the instance's messaging actor is told, and the
//! reconciler is woken only when the instance must be started for the message. A message to
//! a running instance costs no reconcile pass.

use crate::app::instances::group;
use crate::app::instances::last_good::LastGoodConfigs;
use crate::app::router::policy::{self, Addressed, Disposition};
use crate::domain::instance::config::{ConfigError, Isolation};
use crate::domain::instance::state::InstanceState;
use crate::domain::instance::InstanceName;
use crate::infra::home::Home;
use crate::infra::store::instances::InstanceRecord;
use crate::infra::store::messages::{is_valid_message_id, Inbound, MessageRow};
use crate::infra::store::{Store, StoreError};

/// Most text one message may carry.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Why an empty or blank message is refused (before anything is stored).
pub const EMPTY_MESSAGE: &str = "the message is empty: give it some text";

/// A message as it arrives, before anything is stored.
#[derive(Debug, Clone)]
pub struct Incoming<'a> {
    pub instance: &'a InstanceName,
    pub channel: &'a str,
    /// Who wrote it, as the source vouches for it; checked against the allow-list.
    pub sender: &'a str,
    pub text: &'a str,
    /// Its conversation: `""` for the operator's own, `<channel>:<chat>` for a channel's.
    pub chat: &'a str,
    /// The sender's id for it (sending again is then safe); None: a fresh one.
    pub id: Option<&'a str>,
    /// Whom it was said to, as far as its channel can tell.
    pub addressed: Addressed,
    /// How the sender calls themself, where the channel tells (shown beside `sender`).
    pub sender_name: Option<&'a str>,
    /// The chat's title, where the channel tells (a chat group is shown with it).
    pub title: Option<&'a str>,
}

/// Where a message is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// On the instance it was sent to (every message of an instance with one container, the
    /// operator's own conversation, and a refused message).
    Instance,
    /// On the group that serves its chat, made now if there is none.
    Group,
    /// On its chat's group if there is one; otherwise it waits on the instance (context said
    /// before the group existed), never starting a turn there.
    GroupIfAny,
}

/// Where a message of `chat` judged `disposition` goes under `isolation`.
pub fn route(isolation: Isolation, chat: &str, disposition: Disposition) -> Route {
    if isolation == Isolation::Instance || chat.is_empty() {
        return Route::Instance;
    }
    match disposition {
        Disposition::Queued => Route::Group,
        Disposition::Context => Route::GroupIfAny,
        Disposition::Refused => Route::Instance,
    }
}

/// Why a message was not accepted. Nothing is stored for any of these.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("{EMPTY_MESSAGE}")]
    Empty,
    #[error("a message may carry at most {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
    #[error("message id {0:?}: expected 1 to 64 letters, digits, - or _")]
    BadId(String),
    #[error(transparent)]
    NoSuchInstance(StoreError),
    /// The config does not load and no valid one was ever kept.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The id belongs to a different message.
    #[error(transparent)]
    IdTaken(StoreError),
    #[error(transparent)]
    Store(StoreError),
    /// Its chat's group could not be made.
    #[error("cannot make the group for {chat}: {source}")]
    Group {
        chat: String,
        source: Box<crate::app::instances::create::CreateError>,
    },
}

/// A message committed to the store.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub row: MessageRow,
    pub disposition: Disposition,
    /// Its answer, when it was sent again after it was answered: (text, failed).
    pub answered: Option<(String, bool)>,
    /// The instance (or the chat's group) as the store had it when the message was accepted.
    pub record: InstanceRecord,
    /// Context waiting on the instance for its chat's group to be made.
    pub awaiting_group: bool,
}

impl Accepted {
    /// Whether anything is to answer it (a refused message is only stored).
    pub fn is_for_delivery(&self) -> bool {
        self.disposition != Disposition::Refused
    }
}

/// What answers accepted messages: the daemon's messaging actors, and the reconciler that
/// starts containers.
pub trait Courier {
    /// Tells `instance`'s messaging actor that work is waiting.
    fn poke(&self, instance: &str);
    /// Wakes the reconciler, so that a container is started for waiting work.
    fn start_instances(&self);
}

/// The checks that need nothing but the message: done before any store is opened.
pub fn check(text: &str, id: Option<&str>) -> Result<(), AcceptError> {
    if text.trim().is_empty() {
        return Err(AcceptError::Empty);
    }
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(AcceptError::TooLarge);
    }
    match id {
        Some(id) if !is_valid_message_id(id) => Err(AcceptError::BadId(id.to_string())),
        _ => Ok(()),
    }
}

/// Checks `m`, judges it by its instance's last valid config and commits it (once: the same
/// id and text again return the message already stored).
pub fn accept(
    store: &mut Store,
    home: &Home,
    configs: &LastGoodConfigs,
    m: &Incoming,
) -> Result<Accepted, AcceptError> {
    check(m.text, m.id)?;
    let Destination {
        record,
        disposition,
        awaiting_group,
    } = destination(store, home, configs, m)?;
    let id = m.id.map_or_else(crate::domain::ids::new_id, str::to_string);
    let inbound = Inbound {
        instance: &record.name,
        channel: m.channel,
        sender: m.sender,
        body: m.text,
        state: disposition.state(),
        chat: m.chat,
        sender_name: m.sender_name,
    };
    let row = store
        .accept_message_once(&id, &inbound)
        .map_err(|e| match e {
            StoreError::MessageIdTaken(_) => AcceptError::IdTaken(e),
            e => AcceptError::Store(e),
        })?;
    // Sent again after it was answered: the answer is already there.
    let answered = match row.state.as_str() {
        "answered" => store
            .answer_to(&row.id)
            .map_err(AcceptError::Store)?
            .map(|a| (a.body, a.error.is_some())),
        _ => None,
    };
    Ok(Accepted {
        row,
        disposition,
        answered,
        record,
        awaiting_group,
    })
}

/// Where a message goes: the instance (or group) it is stored on, and how it is judged.
#[derive(Debug, Clone)]
pub struct Destination {
    pub record: InstanceRecord,
    pub disposition: Disposition,
    /// Context waiting on the instance for its chat's group to be made.
    pub awaiting_group: bool,
}

/// Judges `m` by its instance's last valid config and finds where it is stored ([`route`]),
/// making its chat's group if it is the first message there to start a turn. Nothing of the
/// message itself is stored. A channel that saves a message's attachment asks this first, so
/// that the file lands in the workspace of whoever will read the message.
pub fn destination(
    store: &mut Store,
    home: &Home,
    configs: &LastGoodConfigs,
    m: &Incoming,
) -> Result<Destination, AcceptError> {
    let name = m.instance.as_str();
    let mut record = store.instance(name).map_err(AcceptError::NoSuchInstance)?;
    let config = configs
        .load(name, &home.instance_paths(m.instance).config)?
        .into_config();
    let disposition = policy::classify(&config, m.sender, m.text, m.addressed);
    let mut awaiting_group = false;
    match route(config.isolation, m.chat, disposition) {
        Route::Instance => {}
        Route::Group => {
            let disk = config.limits.disk_bytes();
            record =
                group::ensure(home, store, &record, m.chat, m.title, disk).map_err(|source| {
                    AcceptError::Group {
                        chat: m.chat.to_string(),
                        source: Box::new(source),
                    }
                })?;
        }
        Route::GroupIfAny => match store.group(name, m.chat).map_err(AcceptError::Store)? {
            Some(g) => record = g,
            None => awaiting_group = true,
        },
    }
    Ok(Destination {
        record,
        disposition,
        awaiting_group,
    })
}

/// Hands an accepted message to whoever answers it.
pub fn deliver(courier: &(impl Courier + ?Sized), accepted: &Accepted) {
    if !accepted.is_for_delivery() {
        return;
    }
    // Context said in a chat whose group does not exist yet waits on the instance
    // for the message that makes the group: nothing is to answer it yet.
    if accepted.awaiting_group {
        return;
    }
    courier.poke(&accepted.row.instance);
    // Context alone starts no turn: a container is started only for a message that does.
    if must_start(&accepted.record) && accepted.disposition == Disposition::Queued {
        courier.start_instances();
    }
}

/// Whether work for `rec` needs the reconciler: its container is not running (stopped, on
/// demand and idle, starting, or waiting for a slot). A running instance's actor answers on
/// its own.
pub fn must_start(rec: &InstanceRecord) -> bool {
    rec.state != InstanceState::Running
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::domain::instance::InstanceConfig;

    #[derive(Default)]
    struct Recorder {
        poked: RefCell<Vec<String>>,
        starts: RefCell<usize>,
    }

    impl Courier for Recorder {
        fn poke(&self, instance: &str) {
            self.poked.borrow_mut().push(instance.to_string());
        }
        fn start_instances(&self) {
            *self.starts.borrow_mut() += 1;
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        home: Home,
        store: Store,
        name: InstanceName,
    }

    fn fixture() -> Fixture {
        let (dir, store) = crate::infra::store::test_store(&["alice"]);
        let home = Home::new(dir.path()).unwrap();
        let name = InstanceName::parse("alice").unwrap();
        let paths = home.instance_paths(&name);
        std::fs::create_dir_all(&paths.dir).unwrap();
        std::fs::write(&paths.config, InstanceConfig::default().to_json_pretty()).unwrap();
        Fixture {
            _dir: dir,
            home,
            store,
            name,
        }
    }

    fn incoming<'a>(name: &'a InstanceName, sender: &'a str, text: &'a str) -> Incoming<'a> {
        Incoming {
            instance: name,
            channel: "cli",
            sender,
            text,
            chat: "",
            id: None,
            addressed: Addressed::ByTrigger,
            sender_name: None,
            title: None,
        }
    }

    fn accepted(state: InstanceState, disposition: Disposition) -> Accepted {
        let mut f = fixture();
        let m = incoming(&f.name, "local", "hello");
        let mut a = accept(&mut f.store, &f.home, &LastGoodConfigs::default(), &m).unwrap();
        a.record.state = state;
        a.disposition = disposition;
        a
    }

    #[test]
    fn a_message_to_a_running_instance_wakes_only_its_actor() {
        let courier = Recorder::default();
        deliver(
            &courier,
            &accepted(InstanceState::Running, Disposition::Queued),
        );
        assert_eq!(*courier.poked.borrow(), ["alice"]);
        assert_eq!(*courier.starts.borrow(), 0, "no reconcile pass");
    }

    #[test]
    fn a_message_to_an_instance_not_running_also_starts_it() {
        for state in [
            InstanceState::Stopped,
            InstanceState::Idle,
            InstanceState::Starting,
            InstanceState::Queued,
            InstanceState::Restarting,
        ] {
            let courier = Recorder::default();
            deliver(&courier, &accepted(state, Disposition::Queued));
            assert_eq!(*courier.poked.borrow(), ["alice"], "{state}");
            assert_eq!(*courier.starts.borrow(), 1, "{state}");
            // Context alone starts no turn, so no container either.
            let courier = Recorder::default();
            deliver(&courier, &accepted(state, Disposition::Context));
            assert_eq!(*courier.poked.borrow(), ["alice"], "{state}");
            assert_eq!(*courier.starts.borrow(), 0, "{state}");
        }
    }

    #[test]
    fn a_chat_message_goes_to_its_group_and_context_before_the_group_waits() {
        use Disposition::*;
        for d in [Queued, Context, Refused] {
            assert_eq!(
                route(Isolation::Instance, "telegram:-5", d),
                Route::Instance
            );
            assert_eq!(
                route(Isolation::Chat, "", d),
                Route::Instance,
                "the operator's own"
            );
        }
        assert_eq!(route(Isolation::Chat, "telegram:-5", Queued), Route::Group);
        assert_eq!(
            route(Isolation::Chat, "telegram:-5", Context),
            Route::GroupIfAny
        );
        assert_eq!(
            route(Isolation::Chat, "telegram:-5", Refused),
            Route::Instance
        );

        // Through the store: context first (it waits on the instance), then the message that makes the group.
        let mut f = fixture();
        // Plain directories: a unit test makes no disk images.
        std::fs::write(f.home.config_path(), "[disk]\nenforce = \"soft\"\n").unwrap();
        let config = f.home.instance_paths(&f.name).config;
        let chat_mode = InstanceConfig {
            isolation: Isolation::Chat,
            allow_from: vec!["*".into()],
            ..InstanceConfig::default()
        };
        std::fs::write(&config, chat_mode.to_json_pretty()).unwrap();
        let configs = LastGoodConfigs::default();
        let mut m = incoming(&f.name, "telegram:7", "said before");
        m.chat = "telegram:-5";
        m.addressed = Addressed::No;
        let first_context = accept(&mut f.store, &f.home, &configs, &m).unwrap();
        assert!(first_context.awaiting_group && first_context.row.instance == "alice");
        let courier = Recorder::default();
        deliver(&courier, &first_context);
        assert!(
            courier.poked.borrow().is_empty(),
            "nothing is to answer it yet"
        );

        m.text = "now for you";
        m.addressed = Addressed::Yes;
        m.title = Some("Team\nchat");
        let first = accept(&mut f.store, &f.home, &configs, &m).unwrap();
        let group = f
            .name
            .group(&crate::domain::instance::name::group_key("telegram:-5"));
        assert_eq!(first.row.instance, group.as_str());
        assert!(!first.awaiting_group);
        let of = first.record.group.clone().unwrap();
        assert_eq!(
            (of.parent.as_str(), of.chat.as_str()),
            ("alice", "telegram:-5")
        );
        assert_eq!(
            of.title.as_deref(),
            Some("Team\\u{a}chat"),
            "one escaped line"
        );
        // The context that waited moved into the group, so its first turn sees it.
        assert_eq!(
            f.store.message(&first_context.row.id).unwrap().instance,
            group.as_str()
        );
        // Its own directory, below the instance's, with its own queues; no persona of its own.
        let paths = f.home.instance_paths(&group);
        assert!(paths
            .dir
            .starts_with(f.home.instance_paths(&f.name).dir.join("groups")));
        assert!(paths.ipc.join("in").is_dir() && paths.workspace.join("memory").is_dir());
        assert!(!paths.workspace.join("SOUL.md").exists());
        assert!(paths.persona.as_ref().unwrap().is_dir());
        // Later context in that chat goes to the group, and the same message again is one.
        m.addressed = Addressed::No;
        m.text = "more context";
        let later = accept(&mut f.store, &f.home, &configs, &m).unwrap();
        assert_eq!(later.row.instance, group.as_str());
        m.id = Some("same-1");
        m.addressed = Addressed::Yes;
        let once = accept(&mut f.store, &f.home, &configs, &m).unwrap();
        let twice = accept(&mut f.store, &f.home, &configs, &m).unwrap();
        assert_eq!(once.row.id, twice.row.id);
        assert_eq!(f.store.groups_of("alice").unwrap().len(), 1);
    }

    #[test]
    fn a_refused_message_is_only_stored() {
        let courier = Recorder::default();
        deliver(
            &courier,
            &accepted(InstanceState::Stopped, Disposition::Refused),
        );
        assert!(courier.poked.borrow().is_empty());
        assert_eq!(*courier.starts.borrow(), 0);
    }

    #[test]
    fn bad_messages_are_refused_before_the_store() {
        assert!(matches!(check(" \n", None), Err(AcceptError::Empty)));
        let long = "x".repeat(MAX_MESSAGE_BYTES + 1);
        assert!(matches!(check(&long, None), Err(AcceptError::TooLarge)));
        assert!(matches!(
            check("hi", Some("a/b")),
            Err(AcceptError::BadId(_))
        ));
        assert!(check("hi", Some("a-b_1")).is_ok());
    }

    #[test]
    fn a_broken_config_is_judged_by_the_last_valid_one_in_any_process() {
        let mut f = fixture();
        let config = f.home.instance_paths(&f.name).config;
        let only_telegram = InstanceConfig {
            allow_from: vec!["telegram:7".into()],
            ..InstanceConfig::default()
        };
        std::fs::write(&config, only_telegram.to_json_pretty()).unwrap();
        let daemon = LastGoodConfigs::default();
        let m = incoming(&f.name, "telegram:7", "hi");
        let a = accept(&mut f.store, &f.home, &daemon, &m).unwrap();
        assert_eq!(a.row.state, "queued");

        std::fs::write(&config, "{nope").unwrap();
        // The reader that saw it valid, and one that never did (the CLI with no daemon),
        // judge alike: telegram:7 is let in, local is not.
        for configs in [daemon, LastGoodConfigs::default()] {
            let a = accept(&mut f.store, &f.home, &configs, &m).unwrap();
            assert_eq!(a.row.state, "queued");
            let local = incoming(&f.name, "local", "hi");
            let a = accept(&mut f.store, &f.home, &configs, &local).unwrap();
            assert_eq!(a.row.state, "refused");
        }
    }

    #[test]
    fn the_same_id_is_stored_once_and_another_text_under_it_is_refused() {
        let mut f = fixture();
        let configs = LastGoodConfigs::default();
        let mut m = incoming(&f.name, "local", "hi");
        m.id = Some("m-1");
        let first = accept(&mut f.store, &f.home, &configs, &m).unwrap();
        let again = accept(&mut f.store, &f.home, &configs, &m).unwrap();
        assert_eq!(
            (first.row.id.as_str(), again.row.id.as_str()),
            ("m-1", "m-1")
        );
        m.text = "another";
        assert!(matches!(
            accept(&mut f.store, &f.home, &configs, &m),
            Err(AcceptError::IdTaken(_))
        ));
        let nobody = InstanceName::parse("nobody").unwrap();
        assert!(matches!(
            accept(
                &mut f.store,
                &f.home,
                &configs,
                &incoming(&nobody, "local", "hi")
            ),
            Err(AcceptError::NoSuchInstance(_))
        ));
    }
}
