int f17(void) { return 17; }
