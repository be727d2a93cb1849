# flush tests: listed by the module's owner
