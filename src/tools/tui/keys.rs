//! What each key does, on each screen: a key changes the model and may ask the run loop to quit
//! or to send a request to the poller. Pure: no terminal, no network. The help overlay
//! (`view`) lists the same keys; `KEYS` is the one table both read.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::model::{Confirm, Model, Screen};
use super::poller::Request;

/// What a key asks the run loop to do beyond redrawing.
#[derive(Debug, PartialEq, Eq)]
pub enum Intent {
    Quit,
    Send(Request),
}

/// The keys, as the help shows them: (screen, keys, what they do).
pub const KEYS: [(&str, &str, &str); 22] = [
    ("everywhere", "? / h", "show or hide this help"),
    ("everywhere", "q / Ctrl-C", "quit"),
    ("everywhere", "↑↓ / k j", "select the previous / next row"),
    ("everywhere", "PgUp PgDn", "move the selection by 10 rows"),
    ("everywhere", "Home / End", "select the first / last row"),
    ("campaigns", "p", "pause the selected campaign"),
    ("campaigns", "r", "resume the selected campaign"),
    ("campaigns", "s", "stop the selected campaign (asks y/n first)"),
    ("campaigns", "o", "sort: running first, id, name, in flight, queued"),
    ("campaigns", "/", "filter campaigns by name (Enter keeps it)"),
    ("campaigns", "Esc", "clear the filter; without one, quit"),
    ("campaigns", "Enter", "open the selected campaign's recent calls"),
    ("campaigns", "d", "open the dead letters"),
    ("calls", "Esc / ←", "back to the campaigns"),
    ("calls", "d", "open the dead letters"),
    ("dead letters", "r / Enter", "replay the selected dead letter"),
    ("dead letters", "A", "replay every dead letter (asks y/n first)"),
    ("dead letters", "Esc / ←", "back to the campaigns"),
    ("filter", "type", "the name filter (any case)"),
    ("filter", "Backspace", "delete a character"),
    ("filter", "Enter / Esc", "keep the filter / clear it"),
    ("question", "y / n", "confirm / cancel (Esc cancels too)"),
];

/// Applies a key to the model; returns what the loop must do beyond redrawing.
pub fn on_key(model: &mut Model, key: KeyEvent) -> Option<Intent> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
        return Some(Intent::Quit);
    }
    if model.confirm.is_some() {
        let yes = matches!(key.code, KeyCode::Char('y') | KeyCode::Char('Y'));
        return model.answer_confirm(yes).map(Intent::Send);
    }
    if model.editing_filter {
        return filter_key(model, key);
    }
    if model.show_help {
        match key.code {
            KeyCode::Char('q') => return Some(Intent::Quit),
            KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('h') => model.show_help = false,
            _ => {}
        }
        return None;
    }
    match key.code {
        KeyCode::Char('q') => return Some(Intent::Quit),
        KeyCode::Char('?') | KeyCode::Char('h') => model.show_help = true,
        KeyCode::Up | KeyCode::Char('k') => model.move_selection(-1),
        KeyCode::Down | KeyCode::Char('j') => model.move_selection(1),
        KeyCode::PageUp => model.move_selection(-10),
        KeyCode::PageDown => model.move_selection(10),
        KeyCode::Home => model.move_selection(isize::MIN),
        KeyCode::End => model.move_selection(isize::MAX),
        _ => {
            return match model.screen {
                Screen::Main => main_key(model, key),
                Screen::Calls { .. } => calls_key(model, key),
                Screen::DeadLetters => dead_letters_key(model, key),
            };
        }
    }
    None
}

fn main_key(model: &mut Model, key: KeyEvent) -> Option<Intent> {
    match key.code {
        KeyCode::Esc if !model.filter.is_empty() => {
            model.filter.clear();
            model.refresh_rows();
            Some(Intent::Send(model.filter_request()))
        }
        KeyCode::Esc => Some(Intent::Quit),
        KeyCode::Char('p') => model.campaign_request(true).map(Intent::Send),
        KeyCode::Char('r') => model.campaign_request(false).map(Intent::Send),
        KeyCode::Char('s') => {
            model.ask_stop();
            None
        }
        KeyCode::Char('o') => {
            model.cycle_sort();
            None
        }
        KeyCode::Char('/') => {
            model.editing_filter = true;
            None
        }
        KeyCode::Enter => model.open_calls().map(Intent::Send),
        KeyCode::Char('d') => Some(Intent::Send(model.open(Screen::DeadLetters))),
        _ => None,
    }
}

fn calls_key(model: &mut Model, key: KeyEvent) -> Option<Intent> {
    match key.code {
        KeyCode::Esc | KeyCode::Left | KeyCode::Backspace => Some(Intent::Send(model.open(Screen::Main))),
        KeyCode::Char('d') => Some(Intent::Send(model.open(Screen::DeadLetters))),
        _ => None,
    }
}

fn dead_letters_key(model: &mut Model, key: KeyEvent) -> Option<Intent> {
    match key.code {
        KeyCode::Esc | KeyCode::Left | KeyCode::Backspace => Some(Intent::Send(model.open(Screen::Main))),
        KeyCode::Char('r') | KeyCode::Enter => model.replay_selected().map(Intent::Send),
        KeyCode::Char('A') => {
            model.confirm = Some(Confirm::ReplayAll);
            None
        }
        _ => None,
    }
}

/// Keys while the filter is typed: the rows follow each key; the poller learns the filter when
/// it is kept (Enter) or cleared (Esc), so typing does not flood it with requests.
fn filter_key(model: &mut Model, key: KeyEvent) -> Option<Intent> {
    match key.code {
        KeyCode::Enter => {
            model.editing_filter = false;
            return Some(Intent::Send(model.filter_request()));
        }
        KeyCode::Esc => {
            model.editing_filter = false;
            model.filter.clear();
            model.refresh_rows();
            return Some(Intent::Send(model.filter_request()));
        }
        KeyCode::Backspace => {
            model.filter.pop();
        }
        KeyCode::Char(c) if !c.is_control() && model.filter.chars().count() < super::model::FILTER_MAX_CHARS => model.filter.push(c),
        _ => return None,
    }
    model.refresh_rows();
    None
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::poller::{Snapshot, Update, Watch};
    use super::*;
    use crate::protocol::api;

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn model_with_campaigns(ids: &[u64]) -> Model {
        let mut model = Model::new("http://127.0.0.1:8000", Duration::from_secs(1));
        let metrics = serde_json::from_str(include_str!("../../../tests/fixtures/tui/metrics.json")).expect("fixture parses");
        let campaigns: Vec<api::Campaign> = ids
            .iter()
            .map(|&id| serde_json::from_value(serde_json::json!({"id": id, "name": format!("c{id}"), "description": "", "is_active": true, "status": "active", "created_at": "", "updated_at": ""})).unwrap())
            .collect();
        model.apply(Update::Snapshot(Box::new(Snapshot {
            metrics,
            campaigns_listed: campaigns.len(),
            campaigns,
            campaigns_truncated: false,
            fetched_at: "2026-11-21T12:00:00Z".parse().unwrap(),
            list: None,
        })));
        model
    }

    fn typed(model: &mut Model, text: &str) {
        for c in text.chars() {
            on_key(model, press(KeyCode::Char(c)));
        }
    }

    #[test]
    fn quit_keys() {
        let mut model = model_with_campaigns(&[1]);
        assert_eq!(on_key(&mut model, press(KeyCode::Char('q'))), Some(Intent::Quit));
        assert_eq!(on_key(&mut model, press(KeyCode::Esc)), Some(Intent::Quit));
        assert_eq!(on_key(&mut model, KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), Some(Intent::Quit));
    }

    #[test]
    fn esc_closes_help_before_quitting() {
        let mut model = model_with_campaigns(&[1]);
        assert_eq!(on_key(&mut model, press(KeyCode::Char('?'))), None);
        assert!(model.show_help);
        assert_eq!(on_key(&mut model, press(KeyCode::Char('p'))), None, "keys other than the help's do nothing under it");
        assert_eq!(on_key(&mut model, press(KeyCode::Esc)), None);
        assert!(!model.show_help);
        assert_eq!(on_key(&mut model, press(KeyCode::Esc)), Some(Intent::Quit));
    }

    #[test]
    fn arrows_and_vi_keys_select_and_p_r_act_on_the_selection() {
        let mut model = model_with_campaigns(&[3, 2, 1]);
        on_key(&mut model, press(KeyCode::Down));
        on_key(&mut model, press(KeyCode::Char('j')));
        assert_eq!(model.selected_id, Some(1));
        on_key(&mut model, press(KeyCode::Char('k')));
        assert_eq!(model.selected_id, Some(2));
        assert_eq!(on_key(&mut model, press(KeyCode::Char('p'))), Some(Intent::Send(Request::Pause { id: 2, name: "c2".into() })));
        on_key(&mut model, press(KeyCode::Up));
        assert_eq!(on_key(&mut model, press(KeyCode::Char('r'))), Some(Intent::Send(Request::Resume { id: 3, name: "c3".into() })));
        on_key(&mut model, press(KeyCode::End));
        assert_eq!(model.selected_id, Some(1));
        on_key(&mut model, press(KeyCode::Home));
        assert_eq!(model.selected_id, Some(3));
    }

    #[test]
    fn stop_asks_first_and_only_y_sends_it() {
        let mut model = model_with_campaigns(&[4]);
        assert_eq!(on_key(&mut model, press(KeyCode::Char('s'))), None);
        assert!(model.confirm.is_some());
        assert_eq!(on_key(&mut model, press(KeyCode::Char('q'))), None, "any key but y cancels, q included");
        assert_eq!(model.confirm, None);
        on_key(&mut model, press(KeyCode::Char('s')));
        assert_eq!(on_key(&mut model, press(KeyCode::Char('y'))), Some(Intent::Send(Request::Stop { id: 4, name: "c4".into() })));
    }

    #[test]
    fn slash_filters_by_name_and_esc_clears_it() {
        let mut model = model_with_campaigns(&[1, 12, 2]);
        on_key(&mut model, press(KeyCode::Char('/')));
        typed(&mut model, "c1q");
        assert_eq!(model.filter, "c1q", "q is typed, not quit");
        on_key(&mut model, press(KeyCode::Backspace));
        assert_eq!(model.rows.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 12]);
        assert_eq!(on_key(&mut model, press(KeyCode::Enter)), Some(Intent::Send(Request::Filter(Some("c1".into())))));
        assert!(!model.editing_filter);
        assert_eq!(on_key(&mut model, press(KeyCode::Esc)), Some(Intent::Send(Request::Filter(None))), "Esc clears a kept filter before it quits");
        assert_eq!(model.rows.len(), 3);
        on_key(&mut model, press(KeyCode::Char('/')));
        typed(&mut model, "zz");
        assert!(model.rows.is_empty());
        assert_eq!(on_key(&mut model, press(KeyCode::Esc)), Some(Intent::Send(Request::Filter(None))));
        assert_eq!(model.rows.len(), 3);
    }

    #[test]
    fn enter_opens_the_calls_d_the_dead_letters_and_esc_comes_back() {
        let mut model = model_with_campaigns(&[5]);
        assert_eq!(on_key(&mut model, press(KeyCode::Enter)), Some(Intent::Send(Request::Watch(Watch::Calls { campaign_id: 5 }))));
        assert_eq!(model.screen, Screen::Calls { campaign_id: 5, name: "c5".into() });
        assert_eq!(on_key(&mut model, press(KeyCode::Char('d'))), Some(Intent::Send(Request::Watch(Watch::DeadLetters))));
        assert_eq!(on_key(&mut model, press(KeyCode::Char('A'))), None);
        assert_eq!(model.confirm, Some(Confirm::ReplayAll));
        assert_eq!(on_key(&mut model, press(KeyCode::Char('y'))), Some(Intent::Send(Request::ReplayAll)));
        assert_eq!(on_key(&mut model, press(KeyCode::Esc)), Some(Intent::Send(Request::Watch(Watch::Nothing))));
        assert_eq!(model.screen, Screen::Main);
    }

    #[test]
    fn key_releases_are_ignored() {
        let mut model = model_with_campaigns(&[1]);
        let mut release = press(KeyCode::Char('q'));
        release.kind = KeyEventKind::Release;
        assert_eq!(on_key(&mut model, release), None);
    }
}
