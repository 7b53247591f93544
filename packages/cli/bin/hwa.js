#!/usr/bin/env node
// The `hwa` command. A committed file (not dist/main.js itself) so that npm can link it at install time,
// before the first build; it runs the built CLI.
import '../dist/main.js';
