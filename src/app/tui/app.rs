//! The dashboard's state and its keys. No I/O here: the loop in `run.rs` feeds it reports and
//! details, and every key binding is a plain state change, unit-testable.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::time::Duration;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::app::status::{InstanceStatus, StatusReport};
use crate::domain::instance::state::InstanceState;
use crate::infra::store::events::Event;

/// What the table is sorted by; `s` cycles through them in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Name,
    State,
    Cpu,
    Memory,
    Queued,
    Tokens,
}

impl SortKey {
    fn next(self) -> Self {
        match self {
            Self::Name => Self::State,
            Self::State => Self::Cpu,
            Self::Cpu => Self::Memory,
            Self::Memory => Self::Queued,
            Self::Queued => Self::Tokens,
            Self::Tokens => Self::Name,
        }
    }

    /// The table column it sorts, as the header names it.
    pub fn column(self) -> &'static str {
        match self {
            Self::Name => "NAME",
            Self::State => "STATE",
            Self::Cpu => "CPU",
            Self::Memory => "MEMORY",
            Self::Queued => "QUEUED",
            Self::Tokens => "TOKENS TODAY",
        }
    }

    /// Whether the unreversed order puts big values first: an operator looks for the busiest
    /// instance first, but reads names alphabetically and states worst first.
    fn biggest_first(self) -> bool {
        !matches!(self, Self::Name | Self::State)
    }

    fn compare(self, a: &InstanceStatus, b: &InstanceStatus) -> Ordering {
        match self {
            Self::Name => a.name.cmp(&b.name),
            Self::State => state_rank(a.state).cmp(&state_rank(b.state)),
            // No sample sorts below any sample.
            Self::Cpu => a
                .cpu_percent
                .unwrap_or(-1.0)
                .total_cmp(&b.cpu_percent.unwrap_or(-1.0)),
            Self::Memory => a.memory_bytes.cmp(&b.memory_bytes),
            Self::Queued => a.queued.cmp(&b.queued),
            Self::Tokens => a.tokens_today.cmp(&b.tokens_today),
        }
    }
}

/// Worst first, so that sorting by state brings what needs attention to the top.
fn state_rank(state: InstanceState) -> u8 {
    match state {
        InstanceState::Error => 0,
        InstanceState::CrashLoop => 1,
        InstanceState::Restarting => 2,
        InstanceState::Starting => 3,
        InstanceState::Queued => 4,
        InstanceState::Running => 5,
        InstanceState::Idle => 6,
        InstanceState::Stopped => 7,
    }
}

/// What the loop should do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Quit,
    /// Gather a new report now instead of at the next tick.
    Refresh,
    /// The selection moved or the detail pane opened: fetch the selected instance's detail.
    FetchDetail,
    /// Only the view changed.
    Redraw,
    /// Act on the selected instance, as the command of the same name would.
    Run(Command, String),
    /// A key the dashboard does not use.
    Ignore,
}

/// What the dashboard can do to the selected instance, each behind the key the footer shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Start,
    Stop,
    Restart,
    /// `logs -f`, on the normal screen until Ctrl-C.
    FollowLogs,
}

impl Command {
    /// The key and its label, in the footer's order. Capitals for the commands that change
    /// an instance, so a stray key does not stop one.
    pub const KEYS: [(char, Command, &'static str); 4] = [
        ('U', Command::Start, "start"),
        ('X', Command::Stop, "stop"),
        ('R', Command::Restart, "restart"),
        ('l', Command::FollowLogs, "follow logs"),
    ];

    /// The CLI's words for it: the dashboard runs the command itself, so the rules and the
    /// messages are the command's.
    pub fn args(self) -> &'static [&'static str] {
        match self {
            Command::Start => &["start"],
            Command::Stop => &["stop"],
            Command::Restart => &["restart"],
            Command::FollowLogs => &["logs", "-f"],
        }
    }

    fn for_key(c: char) -> Option<Command> {
        Self::KEYS
            .iter()
            .find(|(k, ..)| *k == c)
            .map(|(_, cmd, _)| *cmd)
    }
}

/// The selected instance's recent history. Each half is either the data or a one-line note
/// saying why it is missing (no container yet, Docker unreachable, …).
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    pub instance: String,
    /// Newest first, as the store returns them.
    pub events: Result<Vec<Event>, String>,
    /// Oldest first, as a terminal shows output.
    pub logs: Result<Vec<String>, String>,
}

/// A row of the table: an instance, or one of its chat groups while the instance is
/// expanded. Indices into `report.instances` and that instance's `groups`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RowRef {
    pub instance: usize,
    pub group: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct App {
    /// The latest report, its instances (and each one's groups) in display order.
    pub(super) report: StatusReport,
    /// An index into [`App::rows`]; meaningless when there are none.
    pub(super) selected: usize,
    /// The instances whose groups are shown, by name, so that they stay open across
    /// refreshes and sorts.
    pub(super) expanded: HashSet<String>,
    pub(super) sort: SortKey,
    pub(super) reverse: bool,
    pub(super) detail_open: bool,
    pub(super) detail: Option<Detail>,
    /// When `report` was gathered, in ms since the epoch.
    pub(super) refreshed_at: i64,
    pub(super) interval: Duration,
    /// Why the last refresh failed; cleared by the next one that works.
    pub(super) error: Option<String>,
    /// Paint states (off with NO_COLOR).
    pub(super) colour: bool,
    /// What the last command run from the dashboard said (or that it still runs).
    pub(super) message: Option<String>,
    /// How to call this program on this home, for the hints on screen.
    pub(super) command: String,
}

impl App {
    pub fn new(report: StatusReport, now_ms: i64, interval: Duration, colour: bool) -> Self {
        let mut app = Self {
            report,
            selected: 0,
            expanded: HashSet::new(),
            sort: SortKey::Name,
            reverse: false,
            detail_open: true,
            detail: None,
            refreshed_at: now_ms,
            interval,
            error: None,
            colour,
            message: None,
            command: "supervisor".into(),
        };
        app.sort();
        app
    }

    /// Takes a new report, keeping the same instance selected when it is still there.
    /// A group that is gone leaves the selection on its instance.
    pub fn set_report(&mut self, report: StatusReport, now_ms: i64) {
        let keep = self.selected_row().map(|r| {
            let parent = &self.report.instances[r.instance].name;
            (self.row_status(r).name.clone(), parent.clone())
        });
        self.report = report;
        self.refreshed_at = now_ms;
        self.error = None;
        self.sort();
        let found = keep.and_then(|(name, parent)| {
            self.position_of(&name)
                .or_else(|| self.position_of(&parent))
        });
        match found {
            Some(at) => self.selected = at,
            None => self.selected = self.selected.min(self.last_row()),
        }
    }

    /// A failed refresh: the last good report stays on screen, with the reason below it.
    pub fn set_error(&mut self, error: String) {
        self.error = Some(error);
    }

    /// The home shown, so that hints name it (`supervisor --home DIR run`).
    pub fn set_home(&mut self, home: &std::path::Path) {
        self.command = format!("supervisor --home {}", home.display());
    }

    /// The outcome of a command run from the dashboard, for the footer.
    pub fn set_message(&mut self, message: String) {
        self.message = Some(message);
    }

    pub fn set_detail(&mut self, detail: Detail) {
        self.detail = Some(detail);
    }

    pub fn report(&self) -> &StatusReport {
        &self.report
    }

    /// The table's rows in display order: each instance, then its groups when expanded.
    pub(super) fn rows(&self) -> Vec<RowRef> {
        let mut rows = Vec::new();
        for (at, i) in self.report.instances.iter().enumerate() {
            rows.push(RowRef {
                instance: at,
                group: None,
            });
            if self.is_expanded(i) {
                rows.extend((0..i.groups.len()).map(|g| RowRef {
                    instance: at,
                    group: Some(g),
                }));
            }
        }
        rows
    }

    /// Whether `instance`'s groups are shown under it.
    pub(super) fn is_expanded(&self, instance: &InstanceStatus) -> bool {
        !instance.groups.is_empty() && self.expanded.contains(&instance.name)
    }

    /// What a row shows: the instance, or the group.
    pub(super) fn row_status(&self, row: RowRef) -> &InstanceStatus {
        let i = &self.report.instances[row.instance];
        row.group.map_or(i, |g| &i.groups[g])
    }

    fn selected_row(&self) -> Option<RowRef> {
        self.rows().get(self.selected).copied()
    }

    /// The row showing `name`, an instance or a group (group names are names of their own).
    fn position_of(&self, name: &str) -> Option<usize> {
        self.rows()
            .iter()
            .position(|&r| self.row_status(r).name == name)
    }

    /// The selected row's instance or group: every per-instance command takes either name.
    pub fn selected(&self) -> Option<&InstanceStatus> {
        self.selected_row().map(|r| self.row_status(r))
    }

    pub fn selected_name(&self) -> Option<&str> {
        self.selected().map(|i| i.name.as_str())
    }

    /// The instance whose detail the pane shows, when the pane is open.
    pub fn detail_wanted(&self) -> Option<&str> {
        self.selected_name().filter(|_| self.detail_open)
    }

    /// The detail for the selected instance, when it has arrived.
    pub fn current_detail(&self) -> Option<&Detail> {
        self.detail
            .as_ref()
            .filter(|d| Some(d.instance.as_str()) == self.selected_name())
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        // Some terminals report releases too; a key acts once.
        if key.kind == KeyEventKind::Release {
            return Action::Ignore;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) {
            // Raw mode turns Ctrl-C into a key, so it has to quit by hand.
            return match key.code {
                KeyCode::Char('c') => Action::Quit,
                _ => Action::Ignore,
            };
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
            KeyCode::Up | KeyCode::Char('k') => self.select(self.selected.saturating_sub(1)),
            KeyCode::Down | KeyCode::Char('j') => self.select(self.selected + 1),
            KeyCode::Home | KeyCode::Char('g') => self.select(0),
            KeyCode::End | KeyCode::Char('G') => self.select(self.last_row()),
            KeyCode::Right => self.expand(),
            KeyCode::Left => self.collapse(),
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.reverse = false;
                self.resort()
            }
            KeyCode::Char('S') => {
                self.reverse = !self.reverse;
                self.resort()
            }
            KeyCode::Enter | KeyCode::Tab => {
                self.detail_open = !self.detail_open;
                if self.detail_open {
                    Action::FetchDetail
                } else {
                    Action::Redraw
                }
            }
            KeyCode::Char('r') => Action::Refresh,
            KeyCode::Char(c) => match (Command::for_key(c), self.selected_name()) {
                (Some(cmd), Some(name)) => Action::Run(cmd, name.to_string()),
                _ => Action::Ignore,
            },
            _ => Action::Ignore,
        }
    }

    fn last_row(&self) -> usize {
        self.rows().len().saturating_sub(1)
    }

    fn select(&mut self, row: usize) -> Action {
        let row = row.min(self.last_row());
        if row == self.selected {
            return Action::Ignore;
        }
        self.selected = row;
        self.moved()
    }

    /// What a new selection needs: its detail, when the pane shows one.
    fn moved(&self) -> Action {
        if self.detail_open {
            Action::FetchDetail
        } else {
            Action::Redraw
        }
    }

    /// Shows the selected instance's groups under it. Rows below move down, and the
    /// selection stays on the instance.
    fn expand(&mut self) -> Action {
        let Some(RowRef {
            instance,
            group: None,
        }) = self.selected_row()
        else {
            return Action::Ignore;
        };
        let i = &self.report.instances[instance];
        if i.groups.is_empty() || !self.expanded.insert(i.name.clone()) {
            return Action::Ignore;
        }
        Action::Redraw
    }

    /// Hides the groups of the selected instance, or of the selected group's instance: then
    /// the selection goes up to the instance, since its own row goes away.
    fn collapse(&mut self) -> Action {
        let Some(row) = self.selected_row() else {
            return Action::Ignore;
        };
        let name = self.report.instances[row.instance].name.clone();
        if !self.expanded.remove(&name) {
            return Action::Ignore;
        }
        match row.group {
            None => Action::Redraw,
            Some(_) => {
                self.selected = self.position_of(&name).unwrap_or(0);
                self.moved()
            }
        }
    }

    /// Sorts again after the order changed, the selection following its row.
    fn resort(&mut self) -> Action {
        let keep = self.selected_name().map(str::to_string);
        self.sort();
        if let Some(at) = keep.and_then(|n| self.position_of(&n)) {
            self.selected = at;
        }
        Action::Redraw
    }

    /// Sorts the instances, and each one's groups among themselves: a group's row stays
    /// under its instance's.
    fn sort(&mut self) {
        let (key, flip) = (self.sort, self.sort.biggest_first() != self.reverse);
        // Ties always go by name, so rows with equal values keep still between refreshes.
        let order = |a: &InstanceStatus, b: &InstanceStatus| {
            let order = key.compare(a, b);
            let order = if flip { order.reverse() } else { order };
            order.then_with(|| a.name.cmp(&b.name))
        };
        self.report.instances.sort_by(order);
        for i in &mut self.report.instances {
            i.groups.sort_by(order);
        }
    }

    /// Whether the current order puts the largest values first (the header's arrow).
    pub fn descending(&self) -> bool {
        self.sort.biggest_first() != self.reverse
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::app::status::{DaemonStatus, DatabaseStatus, DockerStatus};

    pub fn instance(name: &str, state: &str, cpu: Option<f64>, tokens: i64) -> InstanceStatus {
        InstanceStatus {
            name: name.into(),
            state: state.parse().expect("a state word"),
            desired: crate::domain::instance::state::DesiredState::Running,
            health: "-".into(),
            detail: None,
            uptime_secs: None,
            restarts: 0,
            cpu_percent: cpu,
            memory_bytes: cpu.map(|c| (c * 1e6) as u64),
            memory_limit_bytes: cpu.map(|_| 512 << 20),
            queued: tokens / 100,
            last_activity: None,
            next_task: None,
            tokens_today: tokens,
            disk_bytes: None,
            disk_limit_bytes: None,
            messaging: None,
            channels: vec![],
            node: None,
            group_counts: Default::default(),
            groups: vec![],
        }
    }

    /// `parent` with `groups` as its chat groups, counted as the report counts them.
    pub fn with_groups(mut parent: InstanceStatus, groups: Vec<InstanceStatus>) -> InstanceStatus {
        let c = &mut parent.group_counts;
        for g in &groups {
            match g.state {
                InstanceState::Running | InstanceState::Starting => c.running += 1,
                s if s.is_failing() => c.failing += 1,
                _ => c.idle += 1,
            }
        }
        parent.groups = groups;
        parent
    }

    pub fn report(instances: Vec<InstanceStatus>) -> StatusReport {
        StatusReport {
            daemon: DaemonStatus {
                running: true,
                pid: Some(4242),
                version: Some("0.1.0".into()),
                uptime_secs: Some(3725),
            },
            docker: DockerStatus {
                reachable: true,
                version: Some("20.10.24".into()),
                source: "daemon".into(),
            },
            runtime: Some("rt-abc".into()),
            database: DatabaseStatus {
                path: "/h/supervisor.db".into(),
                bytes: 2_100_000,
            },
            isolation: crate::app::status::Isolation {
                uid_per_instance: true,
                disk_limits: "hard".into(),
                disk_why_not_hard: None,
            },
            instances,
        }
    }

    fn three() -> App {
        App::new(
            report(vec![
                instance("carol", "crash-loop", None, 0),
                instance("alice", "running", Some(2.5), 300),
                instance("bob", "running", Some(40.0), 100),
            ]),
            0,
            Duration::from_secs(2),
            true,
        )
    }

    fn names(app: &App) -> Vec<&str> {
        app.report
            .instances
            .iter()
            .map(|i| i.name.as_str())
            .collect()
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn q_esc_and_ctrl_c_quit_and_plain_c_does_not() {
        let mut app = three();
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), Action::Quit);
        assert_eq!(app.on_key(key(KeyCode::Esc)), Action::Quit);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(app.on_key(ctrl_c), Action::Quit);
        assert_eq!(app.on_key(key(KeyCode::Char('c'))), Action::Ignore);
        let ctrl_q = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::CONTROL);
        assert_eq!(app.on_key(ctrl_q), Action::Ignore);
    }

    #[test]
    fn a_release_does_nothing() {
        let mut app = three();
        let release = KeyEvent::new_with_kind(
            KeyCode::Char('q'),
            KeyModifiers::NONE,
            KeyEventKind::Release,
        );
        assert_eq!(app.on_key(release), Action::Ignore);
    }

    #[test]
    fn arrows_and_jk_move_the_selection_within_the_rows() {
        let mut app = three();
        assert_eq!(names(&app), ["alice", "bob", "carol"]);
        assert_eq!(app.selected_name(), Some("alice"));
        assert_eq!(
            app.on_key(key(KeyCode::Up)),
            Action::Ignore,
            "already first"
        );
        assert_eq!(app.on_key(key(KeyCode::Down)), Action::FetchDetail);
        assert_eq!(app.on_key(key(KeyCode::Char('j'))), Action::FetchDetail);
        assert_eq!(app.selected_name(), Some("carol"));
        assert_eq!(
            app.on_key(key(KeyCode::Down)),
            Action::Ignore,
            "already last"
        );
        assert_eq!(app.on_key(key(KeyCode::Char('k'))), Action::FetchDetail);
        assert_eq!(app.selected_name(), Some("bob"));
        app.on_key(key(KeyCode::Home));
        assert_eq!(app.selected_name(), Some("alice"));
        app.on_key(key(KeyCode::Char('G')));
        assert_eq!(app.selected_name(), Some("carol"));
    }

    #[test]
    fn s_cycles_the_sort_key_and_shift_s_reverses_it() {
        let mut app = three();
        assert_eq!((app.sort, app.descending()), (SortKey::Name, false));
        assert_eq!(app.on_key(key(KeyCode::Char('s'))), Action::Redraw);
        assert_eq!(app.sort, SortKey::State);
        assert_eq!(names(&app), ["carol", "alice", "bob"], "worst state first");
        app.on_key(key(KeyCode::Char('s')));
        assert_eq!((app.sort, app.descending()), (SortKey::Cpu, true));
        assert_eq!(
            names(&app),
            ["bob", "alice", "carol"],
            "busiest first, no sample last"
        );
        app.on_key(KeyEvent::new(KeyCode::Char('S'), KeyModifiers::SHIFT));
        assert!(!app.descending());
        assert_eq!(names(&app), ["carol", "alice", "bob"]);
        app.on_key(key(KeyCode::Char('s')));
        assert_eq!(app.sort, SortKey::Memory);
        assert!(app.descending(), "a new key starts in its own direction");
        for expected in [SortKey::Queued, SortKey::Tokens, SortKey::Name] {
            app.on_key(key(KeyCode::Char('s')));
            assert_eq!(app.sort, expected);
        }
    }

    #[test]
    fn the_selection_follows_its_instance_through_sorts_and_refreshes() {
        let mut app = three();
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.selected_name(), Some("bob"));
        app.on_key(key(KeyCode::Char('s')));
        app.on_key(key(KeyCode::Char('s')));
        assert_eq!((app.sort, app.selected), (SortKey::Cpu, 0));
        assert_eq!(app.selected_name(), Some("bob"));
        // bob's CPU drops: it moves down, and stays selected.
        let next = report(vec![
            instance("alice", "running", Some(9.0), 300),
            instance("bob", "running", Some(1.0), 100),
            instance("carol", "stopped", None, 0),
        ]);
        app.set_error("boom".into());
        app.set_report(next, 5_000);
        assert_eq!((app.selected, app.selected_name()), (1, Some("bob")));
        assert_eq!((app.refreshed_at, app.error.as_deref()), (5_000, None));
        // bob is removed: the selection stays in place, on whoever is there now.
        app.set_report(
            report(vec![instance("alice", "running", Some(9.0), 300)]),
            6_000,
        );
        assert_eq!(app.selected_name(), Some("alice"));
        app.set_report(report(vec![]), 7_000);
        assert_eq!(app.selected_name(), None);
        assert_eq!(app.on_key(key(KeyCode::Down)), Action::Ignore);
    }

    #[test]
    fn enter_and_tab_toggle_the_detail_pane() {
        let mut app = three();
        assert_eq!(app.detail_wanted(), Some("alice"));
        assert_eq!(app.on_key(key(KeyCode::Enter)), Action::Redraw);
        assert_eq!(app.detail_wanted(), None);
        assert_eq!(
            app.on_key(key(KeyCode::Down)),
            Action::Redraw,
            "no fetch for a closed pane"
        );
        assert_eq!(app.on_key(key(KeyCode::Tab)), Action::FetchDetail);
        assert_eq!(app.detail_wanted(), Some("bob"));
        assert_eq!(app.on_key(key(KeyCode::Char('r'))), Action::Refresh);
        assert_eq!(app.on_key(key(KeyCode::Char('x'))), Action::Ignore);
    }

    #[test]
    fn capitals_act_on_the_selected_instance() {
        let mut app = three();
        app.on_key(key(KeyCode::Down));
        let shift = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::SHIFT);
        assert_eq!(
            app.on_key(shift('R')),
            Action::Run(Command::Restart, "bob".into())
        );
        assert_eq!(
            app.on_key(shift('X')),
            Action::Run(Command::Stop, "bob".into())
        );
        assert_eq!(
            app.on_key(shift('U')),
            Action::Run(Command::Start, "bob".into())
        );
        assert_eq!(
            app.on_key(key(KeyCode::Char('l'))),
            Action::Run(Command::FollowLogs, "bob".into())
        );
        assert_eq!(app.on_key(key(KeyCode::Char('x'))), Action::Ignore);
        app.set_report(report(vec![]), 0);
        assert_eq!(app.on_key(shift('R')), Action::Ignore, "nothing selected");
    }

    /// alice with two groups (one crash-looping), bob and carol without.
    fn grouped() -> App {
        let groups = vec![
            instance("alice_b2", "running", Some(1.0), 10),
            instance("alice_a1", "crash-loop", Some(90.0), 0),
        ];
        App::new(
            report(vec![
                instance("bob", "running", Some(40.0), 100),
                with_groups(instance("alice", "running", Some(2.5), 300), groups),
                instance("carol", "idle", None, 0),
            ]),
            0,
            Duration::from_secs(2),
            true,
        )
    }

    fn row_names(app: &App) -> Vec<&str> {
        app.rows()
            .into_iter()
            .map(|r| app.row_status(r).name.as_str())
            .collect()
    }

    #[test]
    fn right_shows_an_instances_groups_under_it_and_left_hides_them() {
        let mut app = grouped();
        assert_eq!(
            row_names(&app),
            ["alice", "bob", "carol"],
            "collapsed at first"
        );
        assert_eq!(app.on_key(key(KeyCode::Right)), Action::Redraw);
        assert_eq!(
            row_names(&app),
            ["alice", "alice_a1", "alice_b2", "bob", "carol"]
        );
        assert_eq!(app.selected_name(), Some("alice"), "the selection stays");
        assert_eq!(
            app.on_key(key(KeyCode::Right)),
            Action::Ignore,
            "already open"
        );
        assert_eq!(app.on_key(key(KeyCode::Left)), Action::Redraw);
        assert_eq!(row_names(&app), ["alice", "bob", "carol"]);
        assert_eq!(
            app.on_key(key(KeyCode::Left)),
            Action::Ignore,
            "already shut"
        );
        app.on_key(key(KeyCode::Down));
        assert_eq!(
            app.on_key(key(KeyCode::Right)),
            Action::Ignore,
            "bob has none"
        );
    }

    #[test]
    fn the_selection_moves_onto_groups_and_commands_act_on_them() {
        let mut app = grouped();
        app.on_key(key(KeyCode::Right));
        assert_eq!(app.on_key(key(KeyCode::Down)), Action::FetchDetail);
        assert_eq!(app.detail_wanted(), Some("alice_a1"));
        assert_eq!(
            app.selected().map(|g| g.state),
            Some(InstanceState::CrashLoop)
        );
        let shift_r = KeyEvent::new(KeyCode::Char('R'), KeyModifiers::SHIFT);
        assert_eq!(
            app.on_key(shift_r),
            Action::Run(Command::Restart, "alice_a1".into())
        );
        assert_eq!(
            app.on_key(key(KeyCode::Right)),
            Action::Ignore,
            "a group has none"
        );
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.selected_name(), Some("alice_b2"));
        // Left on a group shuts its instance; the selection goes back up to it.
        assert_eq!(app.on_key(key(KeyCode::Left)), Action::FetchDetail);
        assert_eq!(app.selected_name(), Some("alice"));
        assert_eq!(row_names(&app), ["alice", "bob", "carol"]);
    }

    #[test]
    fn sorting_keeps_groups_under_their_instance_in_the_same_order() {
        let mut app = grouped();
        app.on_key(key(KeyCode::Right));
        app.on_key(key(KeyCode::Down));
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.selected_name(), Some("alice_b2"));
        app.on_key(key(KeyCode::Char('s')));
        app.on_key(key(KeyCode::Char('s')));
        assert_eq!(app.sort, SortKey::Cpu);
        // alice_a1 is the busiest row, yet stays with alice.
        assert_eq!(
            row_names(&app),
            ["bob", "alice", "alice_a1", "alice_b2", "carol"]
        );
        assert_eq!(
            app.selected_name(),
            Some("alice_b2"),
            "the selection follows"
        );
        app.on_key(KeyEvent::new(KeyCode::Char('S'), KeyModifiers::SHIFT));
        assert_eq!(
            row_names(&app),
            ["carol", "alice", "alice_b2", "alice_a1", "bob"]
        );
    }

    #[test]
    fn a_refresh_keeps_groups_open_and_a_gone_group_leaves_the_selection_on_its_instance() {
        let mut app = grouped();
        app.on_key(key(KeyCode::Right));
        app.on_key(key(KeyCode::Down));
        app.on_key(key(KeyCode::Down));
        app.set_report(grouped().report.clone(), 1_000);
        assert_eq!(app.selected_name(), Some("alice_b2"));
        assert_eq!(row_names(&app).len(), 5, "still open");
        let only_a1 = vec![instance("alice_a1", "running", None, 0)];
        let next = report(vec![
            with_groups(instance("alice", "running", None, 0), only_a1),
            instance("bob", "running", None, 0),
        ]);
        app.set_report(next, 2_000);
        assert_eq!(row_names(&app), ["alice", "alice_a1", "bob"]);
        assert_eq!(app.selected_name(), Some("alice"));
    }

    #[test]
    fn a_detail_shows_only_for_its_own_instance() {
        let mut app = three();
        app.set_detail(Detail {
            instance: "alice".into(),
            events: Ok(vec![]),
            logs: Err("no container".into()),
        });
        assert!(app.current_detail().is_some());
        app.on_key(key(KeyCode::Down));
        assert!(app.current_detail().is_none(), "bob's has not arrived yet");
    }
}
