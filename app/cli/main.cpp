#include <cstdio>
int main() { std::puts("blocklab-cli: placeholder"); return 0; }
