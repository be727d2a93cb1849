# core tests: listed by the module's owner
