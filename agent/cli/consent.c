#include "agent/cli/consent.h"

void px_consent_print(FILE *out, const char *const *collectors, size_t ncollectors) {
  fputs("parallax measures how this network sees a list of internet services, so that\n"
        "researchers can compare countries and find where connections are redirected\n"
        "or intercepted.\n"
        "\n"
        "What it does, about once an hour when the timer is on:\n"
        "  - asks the collector for a list of services (such as www.icloud.com) and\n"
        "    looks each one up in DNS through this machine's resolvers;\n"
        "  - connects to the addresses it gets and records the certificate chain the\n"
        "    server presents (a TLS handshake, no page is fetched, nothing is logged in);\n"
        "  - stays within the budget you set (targets, time, bytes).\n"
        "\n"
        "What it uploads and what is published:\n"
        "  - each measurement: the DNS answers, the certificates, errors, timings,\n"
        "    the resolver addresses, your country and network (e.g. DE, AS3320),\n"
        "    software versions;\n"
        "  - NOT your IP address: it is replaced by 127.0.0.1, and any of this\n"
        "    machine's addresses found in a measurement is replaced by \"[scrubbed]\"\n"
        "    (a measurement that is about this machine itself stays here);\n"
        "  - the collector looks up your country and network from the address it\n"
        "    sees and then forgets the address; through a proxy or Tor it does not\n"
        "    look at all, and you state country and network yourself.\n"
        "  - Every measurement is signed with this agent's key. The key id links all\n"
        "    of this agent's measurements to each other (not to you): anyone can\n"
        "    tell they came from the same agent. `parallax keygen --rotate` starts a\n"
        "    new identity at any time.\n"
        "  - Measurements are published openly under the Creative Commons\n"
        "    Attribution 4.0 licence (CC BY 4.0): anyone may download, study and\n"
        "    republish them.\n"
        "\n"
        "Running measurements can be noticed by your network operator, and in some\n"
        "countries testing for censorship can be risky. You can pause at any time\n"
        "(systemctl stop parallax.timer) and leave (parallax setup --withdraw).\n",
        out);
  if (ncollectors > 0) {
    fputs("\nMeasurements go to:", out);
    for (size_t i = 0; i < ncollectors; i++)
      fprintf(out, " %s", collectors[i]);
    fputs("\n", out);
  }
}
