# receive tests: listed by the module's owner
