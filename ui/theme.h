// Light and dark window themes: the Fusion style with a light or a dark
// palette (the platform style ignores palettes on some desktops). The few
// style sheets in the UI set only accent colours (errors, overrides) that read
// on both backgrounds; charts switch their own theme (ChartsPanel::set_dark).
#pragma once

namespace bl {

/// Applies the theme to the whole application (QApplication must exist).
void apply_theme(bool dark);
/// Whether the application palette is the dark one (window colour is dark).
bool theme_is_dark();

}  // namespace bl
