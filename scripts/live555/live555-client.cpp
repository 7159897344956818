// A minimal RTSP client on the live555 library (the RTSP stack of upstream VLC builds and of
// many cameras and NVRs), for Livecast's interop tests: DESCRIBE, SETUP of every medium the
// library can receive, PLAY, then it counts what arrives for a while and prints one line per
// medium. It speaks RTSP the way live555 does (its User-Agent, its Digest answers from the
// URL's user:password, its Transport lines), which is what the tests check against.
//
// usage: livecast-live555-client [--tcp] [--seconds N] rtsp://[user:pass@]host:port/path
// output: "medium video/H264 frames=N bytes=B keyframes=K" per medium, then "done";
// exit status 0 when every set-up medium received data, 1 when one did not, 2 on an RTSP error.

#include "BasicUsageEnvironment.hh"
#include "liveMedia.hh"

#include <cstdio>
#include <cstdlib>
#include <cstring>

static UsageEnvironment* env;
static RTSPClient* client;
static MediaSession* session;
static MediaSubsessionIterator* setupIter;
static Boolean useTcp = False;
static unsigned seconds = 5;

static void shutdown(int code);

class CountingSink : public MediaSink {
public:
    CountingSink(UsageEnvironment& e, MediaSubsession& s) : MediaSink(e), sub(s) {
        buf = new u_int8_t[BUF_SIZE];
    }
    ~CountingSink() override { delete[] buf; }
    unsigned frames = 0;
    unsigned long bytes = 0;
    unsigned keyframes = 0;

private:
    static const unsigned BUF_SIZE = 4 * 1024 * 1024;
    static void afterFrame(void* data, unsigned size, unsigned, struct timeval, unsigned) {
        auto* s = static_cast<CountingSink*>(data);
        s->frames++;
        s->bytes += size;
        if (strcmp(s->sub.codecName(), "H264") == 0 && size > 0 && (s->buf[0] & 0x1f) == 5) {
            s->keyframes++;
        }
        s->continuePlaying();
    }
    Boolean continuePlaying() override {
        if (fSource == nullptr) return False;
        fSource->getNextFrame(buf, BUF_SIZE, afterFrame, this, onSourceClosure, this);
        return True;
    }
    MediaSubsession& sub;
    u_int8_t* buf;
};

static void fail(const char* what, int code, const char* result) {
    fprintf(stdout, "error: %s: %d %s\n", what, code, result ? result : "");
    fflush(stdout);
    shutdown(2);
}

static void setupNext();

static void afterSetup(RTSPClient*, int code, char* result) {
    delete[] result;
    if (code != 0) {
        fprintf(stdout, "setup refused: %d\n", code);
    }
    setupNext();
}

static void stopAfterTime(void*) {
    int status = 0;
    MediaSubsessionIterator it(*session);
    MediaSubsession* s;
    while ((s = it.next()) != nullptr) {
        auto* sink = static_cast<CountingSink*>(s->sink);
        if (sink == nullptr) continue;
        fprintf(stdout, "medium %s/%s frames=%u bytes=%lu keyframes=%u\n", s->mediumName(),
                s->codecName(), sink->frames, sink->bytes, sink->keyframes);
        if (sink->frames == 0) status = 1;
    }
    fprintf(stdout, "done\n");
    fflush(stdout);
    shutdown(status);
}

static void afterPlay(RTSPClient*, int code, char* result) {
    if (code != 0) {
        fail("PLAY", code, result);
        return;
    }
    delete[] result;
    env->taskScheduler().scheduleDelayedTask(seconds * 1000000LL, stopAfterTime, nullptr);
}

static void setupNext() {
    MediaSubsession* s;
    while ((s = setupIter->next()) != nullptr) {
        if (!s->initiate()) {
            fprintf(stdout, "medium %s/%s not received: %s\n", s->mediumName(), s->codecName(),
                    env->getResultMsg());
            continue;
        }
        client->sendSetupCommand(*s, afterSetup, False, useTcp);
        return;
    }
    MediaSubsessionIterator it(*session);
    while ((s = it.next()) != nullptr) {
        if (s->readSource() == nullptr || s->clientPortNum() == 0 && !useTcp) continue;
        s->sink = new CountingSink(*env, *s);
        s->sink->startPlaying(*s->readSource(), nullptr, nullptr);
    }
    client->sendPlayCommand(*session, afterPlay);
}

static void afterDescribe(RTSPClient*, int code, char* result) {
    if (code != 0) {
        fail("DESCRIBE", code, result);
        return;
    }
    session = MediaSession::createNew(*env, result);
    delete[] result;
    if (session == nullptr || !session->hasSubsessions()) {
        fail("SDP", 0, env->getResultMsg());
        return;
    }
    setupIter = new MediaSubsessionIterator(*session);
    setupNext();
}

static void shutdown(int code) {
    if (session != nullptr && client != nullptr) {
        client->sendTeardownCommand(*session, nullptr);
    }
    exit(code);
}

int main(int argc, char** argv) {
    const char* url = nullptr;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tcp") == 0) {
            useTcp = True;
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = static_cast<unsigned>(atoi(argv[++i]));
        } else {
            url = argv[i];
        }
    }
    if (url == nullptr) {
        fprintf(stderr, "usage: %s [--tcp] [--seconds N] rtsp://...\n", argv[0]);
        return 2;
    }
    TaskScheduler* scheduler = BasicTaskScheduler::createNew();
    env = BasicUsageEnvironment::createNew(*scheduler);
    client = RTSPClient::createNew(*env, url, 0, "livecast-live555-client");
    if (client == nullptr) {
        fprintf(stdout, "error: %s\n", env->getResultMsg());
        return 2;
    }
    client->sendDescribeCommand(afterDescribe);
    env->taskScheduler().doEventLoop();
    return 0;
}
