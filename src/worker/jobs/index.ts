/** Imports every job module for its registration side effect (one line per feature). */
import './registry';
import './surgery';
import './training';
import './base';
import './research';
import './convert';
