"""The window engine: windows, runner, sinks, blending, return to the native grid, backends."""
