//! The terminal and the loop: raw mode and the alternate screen for the session, put back on
//! every way out (return, error, panic), a refresh every interval, keys in between.

use std::io::Stdout;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event};
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::crossterm::{cursor, execute};
use ratatui::Terminal;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use super::app::{Action, App, Command};
use super::commands::{self, Job};
use super::fetch::Fetcher;
use super::view;
use crate::app::status::StatusReport;
use crate::infra::home::Home;
use crate::infra::store::now_ms;

#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error("cannot start the runtime for Docker calls: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot set up the terminal: {0}")]
    Setup(#[source] std::io::Error),
    #[error("terminal I/O failed: {0}")]
    Terminal(#[source] std::io::Error),
}

/// Runs the dashboard until the user quits. `first` is a report the caller already has, so
/// that a home that cannot be read fails before the screen changes.
pub fn run(home: &Home, first: StatusReport, interval: Duration) -> Result<(), TuiError> {
    let mut fetch = Fetcher::new(home).map_err(TuiError::Runtime)?;
    let colour = std::env::var_os("NO_COLOR").is_none();
    let mut app = App::new(first, now_ms(), interval, colour);
    app.set_home(home.root());
    let mut screen = Screen::enter().map_err(TuiError::Setup)?;
    let result = event_loop(
        &mut screen.terminal,
        &mut app,
        &mut fetch,
        interval,
        home.root(),
    );
    drop(screen);
    result.map_err(TuiError::Terminal)
}

fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    fetch: &mut Fetcher,
    interval: Duration,
    home: &std::path::Path,
) -> std::io::Result<()> {
    let mut next_refresh = Instant::now() + interval;
    // SIGTERM or SIGHUP (a service manager, a closed terminal) ends the loop like `q`, so
    // the screen is given back; the flag is looked at between events.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGHUP] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    // SIGINT too, except for the Ctrl-C that ends a `logs -f` run from here: that one is
    // the child's, and brings the user back. (In raw mode Ctrl-C is a key, not a signal.)
    let interrupted = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(SIGINT, interrupted.clone())?;
    let mut job: Option<Job> = None;
    // The report first, then the slower detail: the screen is not blank while Docker answers.
    terminal.draw(|frame| view::draw(frame, app))?;
    fetch_detail(app, fetch);
    loop {
        if stop.load(Ordering::SeqCst) || interrupted.load(Ordering::SeqCst) {
            return Ok(());
        }
        if let Some(said) = job.as_mut().and_then(Job::try_finish) {
            app.set_message(said);
            job = None;
            next_refresh = Instant::now();
        }
        terminal.draw(|frame| view::draw(frame, app))?;
        let mut wants_detail = false;
        let wait = next_refresh
            .saturating_duration_since(Instant::now())
            .min(SIGNAL_CHECK);
        // The wait is ours, not the terminal library's: its poll spins on a terminal that
        // hangs up while it waits, and never returns.
        let ready = match wait_for_input(wait) {
            Input::HungUp => return Ok(()),
            Input::Ready => true,
            Input::None => false,
        };
        if ready {
            // Take every pending event before any I/O: a held arrow key then moves the
            // selection without a Docker call per step. A terminal that hung up reads as
            // ready for ever, and the terminal library's read then spins on its end of file:
            // it is never called once the terminal is gone (nor after a signal).
            for _ in 0..MAX_EVENTS_AT_ONCE {
                if stop.load(Ordering::SeqCst)
                    || interrupted.load(Ordering::SeqCst)
                    || terminal_hung_up()
                {
                    return Ok(());
                }
                if let Event::Key(key) = event::read()? {
                    match app.on_key(key) {
                        Action::Quit => return Ok(()),
                        Action::Refresh => next_refresh = Instant::now(),
                        Action::FetchDetail => wants_detail = true,
                        Action::Run(Command::FollowLogs, name) => {
                            follow_logs(terminal, home, &name, &interrupted)?;
                            interrupted.store(false, Ordering::SeqCst);
                            next_refresh = Instant::now();
                        }
                        Action::Run(cmd, name) => match &job {
                            Some(running) => {
                                let note = format!("wait: `{}` is still running", running.what());
                                app.set_message(note);
                            }
                            None => match Job::spawn(home, cmd, &name) {
                                Ok(started) => {
                                    app.set_message(format!("{} …", started.what()));
                                    job = Some(started);
                                }
                                Err(e) => app.set_message(format!("cannot run it: {e}")),
                            },
                        },
                        Action::Redraw | Action::Ignore => {}
                    }
                }
                if !event::poll(Duration::ZERO)? {
                    break;
                }
            }
        }
        if Instant::now() >= next_refresh {
            match fetch.report() {
                Ok(report) => app.set_report(report, now_ms()),
                Err(e) => app.set_error(crate::domain::error_text::one_line(&e)),
            }
            fetch_detail(app, fetch);
            next_refresh = Instant::now() + interval;
        } else if wants_detail {
            fetch_detail(app, fetch);
        }
    }
}

/// `logs -f` on the normal screen; the dashboard comes back when it ends (after Enter, so
/// that its last words can be read) or at Ctrl-C.
fn follow_logs(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    home: &std::path::Path,
    name: &str,
    interrupted: &AtomicBool,
) -> std::io::Result<()> {
    use std::io::Write;
    suspend();
    println!(
        "following {name}'s logs (supervisor logs -f {name}); Ctrl-C returns to the dashboard"
    );
    let ended = commands::follow_logs(home, name);
    // Ctrl-C reached this process too: the user asked to go back, at once.
    if !interrupted.load(Ordering::SeqCst) {
        if let Err(e) = &ended {
            println!("cannot run it: {e}");
        }
        print!("press Enter to return to the dashboard ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
    }
    resume()?;
    // A new terminal draws every cell on the fresh alternate screen (`clear` would ask the
    // terminal for the cursor position, which not every terminal answers).
    *terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    Ok(())
}

/// The longest the loop waits for a key before looking at the signal flag again.
/// What the terminal on stdin has for us.
enum Input {
    Ready,
    None,
    /// Its other end closed: reading it would only ever give end of file.
    HungUp,
}

/// Waits up to `wait` for the terminal on stdin.
fn wait_for_input(wait: Duration) -> Input {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
    let ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
    let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, timeout) {
        Ok(_) => match fds[0].revents() {
            Some(r)
                if r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) =>
            {
                Input::HungUp
            }
            Some(r) if r.contains(PollFlags::POLLIN) => Input::Ready,
            _ => Input::None,
        },
        // A signal came: the caller looks at its flags.
        Err(_) => Input::None,
    }
}

/// Whether the terminal on stdin has hung up, without waiting.
fn terminal_hung_up() -> bool {
    matches!(wait_for_input(Duration::ZERO), Input::HungUp)
}

/// Most events taken in one go before the loop looks at its flags and its clock again.
const MAX_EVENTS_AT_ONCE: usize = 256;
const SIGNAL_CHECK: Duration = Duration::from_millis(200);

fn fetch_detail(app: &mut App, fetch: &mut Fetcher) {
    if let Some(name) = app.detail_wanted().map(str::to_string) {
        let detail = fetch.detail(&name, app.report().docker.reachable);
        app.set_detail(detail);
    }
}

/// Whether the terminal is in the dashboard's modes, so that the panic hook (installed for
/// the process) restores only what the dashboard changed.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// The terminal in raw mode on the alternate screen; dropping it puts both back.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> std::io::Result<Self> {
        install_panic_hook();
        ACTIVE.store(true, Ordering::SeqCst);
        let entered = enable_raw_mode()
            .and_then(|()| execute!(std::io::stdout(), EnterAlternateScreen))
            .and_then(|()| Terminal::new(CrosstermBackend::new(std::io::stdout())));
        match entered {
            Ok(terminal) => Ok(Self { terminal }),
            Err(e) => {
                // Half-way in is still changed: put back what was.
                restore();
                Err(e)
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Gives the normal screen back for a while (see [`resume`]).
fn suspend() {
    restore();
}

/// Back to the dashboard's modes after [`suspend`].
fn resume() -> std::io::Result<()> {
    ACTIVE.store(true, Ordering::SeqCst);
    enable_raw_mode()?;
    execute!(std::io::stdout(), EnterAlternateScreen)
}

fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        // Every step, even after one fails: a half-restored terminal is still unusable.
        let _ = disable_raw_mode();
        let _ = execute!(std::io::stdout(), LeaveAlternateScreen, cursor::Show);
    }
}

/// A panic's message must land on the normal screen, in cooked mode, or it is lost with the
/// alternate screen: restore first, then report as usual.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            report(info);
        }));
    });
}
