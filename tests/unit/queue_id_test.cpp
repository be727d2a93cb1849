#include "leafmail/spool/queue_id.hpp"

#include <catch2/catch.hpp>

#include <set>

using namespace leafmail::spool;

TEST_CASE("queue ids have a fixed shape and validate")
{
    const std::string id = make_queue_id(0x5f4a3b2c1d0eULL, 0x1f3a, 1);
    CHECK(id == "00005f4a3b2c1d0e-00001f3a-0001");
    CHECK(is_valid_queue_id(id));
    CHECK(is_valid_queue_id(make_queue_id()));
}

TEST_CASE("queue ids refuse anything that could escape a directory or is not ours")
{
    for (const char* bad : {"", "..", "../etc/passwd", "00005f4a3b2c1d0e-00001f3a-000",
                            "00005f4a3b2c1d0e-00001f3a-00011", "00005F4A3B2C1D0E-00001F3A-0001",
                            "00005f4a3b2c1d0e/00001f3a-0001", "00005f4a3b2c1d0e-00001f3a-0001.env",
                            "00005f4a3b2c1d0e_00001f3a_0001"})
        CHECK_FALSE(is_valid_queue_id(bad));
}

TEST_CASE("queue ids made in a row are unique and sort by arrival")
{
    std::vector<std::string> ids;
    for (int i = 0; i < 5000; ++i)
        ids.push_back(make_queue_id());
    CHECK(std::set<std::string>(ids.begin(), ids.end()).size() == ids.size());
    CHECK(std::is_sorted(ids.begin(), ids.end(), [](const auto& a, const auto& b) {
        return a.substr(0, 16) < b.substr(0, 16);
    }));
    CHECK(make_queue_id(1, 9, 9) < make_queue_id(2, 1, 1));
}

TEST_CASE("the time an id was made is read back from it")
{
    CHECK(queue_id_time(make_queue_id(1795352400123456ULL, 42, 7)) == 1795352400);
    CHECK(queue_id_time("00005f4a3b2c1d0e-00001f3a-0001") == 0x5f4a3b2c1d0eLL / 1000000);
    CHECK(queue_id_time("not an id") == 0);
    CHECK(queue_id_time("00005F4A3B2C1D0E-00001f3a-0001") == 0);
}
